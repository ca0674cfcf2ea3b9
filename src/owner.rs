//! `--owner USER[:GROUP]`: the user and group that every file and
//! directory logpipe creates is given to.
//!
//! Names are looked up in `/etc/passwd` and `/etc/group`, read directly:
//! a static binary in a container has no NSS modules to load, and a lookup
//! through the C library there would fail or, worse, differ from what the
//! image's files say. Numeric ids always work, with or without the files.
//!
//! The owner is given through the new file's descriptor (`fchown`), right
//! after it is created with `O_EXCL` ([`crate::sys::Dir::create_new`]), so
//! it never follows a symbolic link and never changes a file logpipe did
//! not create. It is chosen once, at start ([`set`]), and read wherever a
//! file is created or judged logpipe's own ([`crate::sys::is_our_uid`]): a
//! file given to the `--owner` user is still one logpipe made.

use std::fmt;
use std::sync::OnceLock;

/// The passwd file names are resolved from.
const PASSWD: &str = "/etc/passwd";
/// The group file names are resolved from.
const GROUP: &str = "/etc/group";

/// Who created files are given to: a user, a group, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The new owner; `None` leaves it (`:GROUP`).
    pub uid: Option<u32>,
    /// The new group; `None` leaves it (`USER`).
    pub gid: Option<u32>,
    /// What was given on the command line, for messages.
    spec: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

/// Why a chown of a new file failed in a way no wait cures (EPERM,
/// EINVAL): the file was removed again, and logpipe stops.
#[derive(Debug)]
pub struct NotGiven {
    pub owner: String,
    pub error: std::io::Error,
}

impl fmt::Display for NotGiven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unable to give it to {} (--owner): {}",
            self.owner, self.error
        )
    }
}

impl std::error::Error for NotGiven {}

static OWNER: OnceLock<Owner> = OnceLock::new();

/// Sets the owner for the rest of the run; a second call is ignored.
pub fn set(owner: Owner) {
    let _ = OWNER.set(owner);
}

/// The owner set at start, if any.
pub fn get() -> Option<&'static Owner> {
    OWNER.get()
}

/// The clap value parser of `--owner`: resolves the names from the files,
/// then checks that logpipe may give files away as asked.
pub fn parse_arg(text: &str) -> Result<Owner, String> {
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| {
            format!("unable to read {path} to look the name up: {e}; give a numeric id instead")
        })
    };
    let owner = parse(text, || read(PASSWD), || read(GROUP))?;
    let euid = rustix::process::geteuid().as_raw();
    let egid = rustix::process::getegid().as_raw();
    let groups: Vec<u32> = rustix::process::getgroups()
        .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    owner.check_allowed(euid, egid, &groups)?;
    Ok(owner)
}

/// Parses `USER`, `USER:GROUP`, `USER:` (the user's login group) or
/// `:GROUP`. A name of digits only is a numeric id; other names are looked
/// up in the text `passwd` and `group` return, read only if needed.
pub fn parse(
    text: &str,
    passwd: impl FnOnce() -> Result<String, String>,
    group: impl FnOnce() -> Result<String, String>,
) -> Result<Owner, String> {
    let (user, group_name) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    if user.is_empty() && group_name.is_none_or(str::is_empty) {
        return Err("expected USER, USER:GROUP or :GROUP".into());
    }
    let mut passwd = Some(passwd);
    let mut login_gid = None;
    let uid = if user.is_empty() {
        None
    } else if let Some(id) = numeric(user)? {
        Some(id)
    } else {
        let text = passwd.take().expect("read once")()?;
        let (uid, gid) =
            find_user(&text, user).ok_or_else(|| format!("no user '{user}' in {PASSWD}"))?;
        login_gid = Some(gid);
        Some(uid)
    };
    let gid = match group_name {
        None => None,
        Some("") => {
            // `USER:`: the user's login group, as chown(1) has it.
            match login_gid {
                Some(gid) => Some(gid),
                None => {
                    let text = passwd.take().expect("read once")()?;
                    let (_, gid) = find_uid(&text, uid.unwrap_or_default()).ok_or_else(|| {
                        format!("no user with uid {user} in {PASSWD} to take the login group of")
                    })?;
                    Some(gid)
                }
            }
        }
        Some(name) => match numeric(name)? {
            Some(id) => Some(id),
            None => {
                let text = group()?;
                Some(
                    find_group(&text, name)
                        .ok_or_else(|| format!("no group '{name}' in {GROUP}"))?,
                )
            }
        },
    };
    Ok(Owner {
        uid,
        gid,
        spec: text.to_string(),
    })
}

impl Owner {
    /// Checks that a process with these ids may give files away as asked:
    /// only root gives a file to another user; a user may give a file of
    /// its own to a group it is a member of.
    pub fn check_allowed(&self, euid: u32, egid: u32, groups: &[u32]) -> Result<(), String> {
        if euid == 0 {
            return Ok(());
        }
        if let Some(uid) = self.uid
            && uid != euid
        {
            return Err(format!(
                "only root may give files to another user (logpipe runs as uid {euid}); \
                 run logpipe as that user instead, or give :GROUP alone"
            ));
        }
        if let Some(gid) = self.gid
            && gid != egid
            && !groups.contains(&gid)
        {
            return Err(format!(
                "uid {euid} is not a member of group {gid}, so it may not give files to it"
            ));
        }
        Ok(())
    }
}

/// A name of digits only, as an id; `None` for a name. The id `-1`
/// (4294967295) means "no change" to chown, so it is refused.
fn numeric(text: &str) -> Result<Option<u32>, String> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(id) if id != u32::MAX => Ok(Some(id)),
        _ => Err(format!("'{text}' is not a valid id")),
    }
}

/// The fields of the lines of a passwd or group file, skipping comments,
/// blank lines and NIS `+`/`-` entries.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '+', '-']))
        .map(|line| line.split(':').collect())
}

/// The uid and login gid of `name` in a passwd file
/// (`name:password:uid:gid:gecos:home:shell`).
fn find_user(text: &str, name: &str) -> Option<(u32, u32)> {
    records(text)
        .filter(|f| f.len() >= 4 && f[0] == name)
        .find_map(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
}

/// The uid and login gid of the first user with uid `uid`.
fn find_uid(text: &str, uid: u32) -> Option<(u32, u32)> {
    records(text)
        .filter(|f| f.len() >= 4 && f[2].parse() == Ok(uid))
        .find_map(|f| Some((uid, f[3].parse().ok()?)))
}

/// The gid of `name` in a group file (`name:password:gid:members`).
fn find_group(text: &str, name: &str) -> Option<u32> {
    records(text)
        .filter(|f| f.len() >= 3 && f[0] == name)
        .find_map(|f| f[2].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "\
# a comment
root:x:0:0:root:/root:/bin/bash

+nisuser::::::
app:x:1000:1001:The App,,,:/srv/app:/usr/sbin/nologin
broken:x:notanumber:1
2000:x:3000:3000::/:/bin/false
";
    const GROUP_TEXT: &str = "\
root:x:0:
adm:x:4:syslog,app
app:x:1001:
";

    fn owner(text: &str) -> Result<(Option<u32>, Option<u32>), String> {
        parse(text, || Ok(PASSWD_TEXT.into()), || Ok(GROUP_TEXT.into())).map(|o| (o.uid, o.gid))
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(owner("app"), Ok((Some(1000), None)));
        assert_eq!(owner("app:adm"), Ok((Some(1000), Some(4))));
        assert_eq!(owner("app:"), Ok((Some(1000), Some(1001))));
        assert_eq!(owner(":adm"), Ok((None, Some(4))));
        assert_eq!(owner("root:root"), Ok((Some(0), Some(0))));
        // Digits are ids, even where a name of digits exists.
        assert_eq!(owner("2000:7"), Ok((Some(2000), Some(7))));
        assert_eq!(owner("1000:"), Ok((Some(1000), Some(1001))));
        assert_eq!(owner(":4"), Ok((None, Some(4))));
        assert_eq!(owner("0"), Ok((Some(0), None)));
    }

    #[test]
    fn unknown_names_and_bad_ids_are_named() {
        assert_eq!(owner("bob"), Err("no user 'bob' in /etc/passwd".into()));
        assert_eq!(
            owner("app:wheel"),
            Err("no group 'wheel' in /etc/group".into())
        );
        // A line that does not parse finds nothing; NIS lines are skipped.
        assert_eq!(
            owner("broken"),
            Err("no user 'broken' in /etc/passwd".into())
        );
        assert_eq!(
            owner("+nisuser"),
            Err("no user '+nisuser' in /etc/passwd".into())
        );
        assert_eq!(
            owner("4294967295"),
            Err("'4294967295' is not a valid id".into())
        );
        assert_eq!(
            owner("99999999999"),
            Err("'99999999999' is not a valid id".into())
        );
        for bad in ["", ":"] {
            assert_eq!(
                owner(bad),
                Err("expected USER, USER:GROUP or :GROUP".into())
            );
        }
        assert!(owner("777:").unwrap_err().contains("no user with uid 777"));
    }

    #[test]
    fn files_are_read_only_when_a_name_needs_them() {
        let missing = || Err::<String, _>("unreadable".to_string());
        let o = parse("1000:4", missing, missing).unwrap();
        assert_eq!((o.uid, o.gid), (Some(1000), Some(4)));
        assert_eq!(o.to_string(), "1000:4");
        assert_eq!(parse("app", missing, missing), Err("unreadable".into()));
        assert_eq!(parse(":adm", missing, missing), Err("unreadable".into()));
    }

    #[test]
    fn only_root_gives_files_away() {
        let o = |text| parse(text, || Ok(PASSWD_TEXT.into()), || Ok(GROUP_TEXT.into())).unwrap();
        assert_eq!(o("app:adm").check_allowed(0, 0, &[]), Ok(()));
        assert!(
            o("app")
                .check_allowed(1002, 1002, &[])
                .unwrap_err()
                .contains("only root")
        );
        // A user gives its own files to a group it is a member of.
        assert_eq!(o(":adm").check_allowed(1000, 1001, &[1001, 4]), Ok(()));
        assert_eq!(o("app:app").check_allowed(1000, 1001, &[]), Ok(()));
        assert!(
            o(":adm")
                .check_allowed(1000, 1001, &[1001])
                .unwrap_err()
                .contains("not a member")
        );
    }
}
