//! The command line: usage errors exit 2 and create nothing; an unusable
//! target is one line on stderr and exit 1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::util::{TestEnv, ensure_program};

#[test]
fn usage_errors_exit_2_and_create_nothing() {
    // Each: the arguments, and what the first line of the error must say
    // (it names the bad value).
    let cases: &[(&[&str], &str)] = &[
        (
            &["--size", "0", "out/"],
            "invalid value '0' for '--size <SIZE>': size must be greater than zero",
        ),
        (
            &["--size", "12Q", "out/"],
            "invalid value '12Q' for '--size <SIZE>': unknown suffix 'Q'",
        ),
        (&["--size", "-1", "out/"], "unexpected argument '-1'"),
        (
            &["--prune-keep", "3", "out/"],
            "--prune-keep only applies with --on-full prune",
        ),
        (
            &["--size", "1.5M", "out/"],
            "invalid value '1.5M' for '--size <SIZE>'",
        ),
        (
            &["--size", "", "out/"],
            "invalid value '' for '--size <SIZE>'",
        ),
        (
            &["--size", "99999999999T", "out/"],
            "invalid value '99999999999T' for '--size <SIZE>': size too large",
        ),
        (
            &["--level", "0", "out/"],
            "invalid value '0' for '--level <LEVEL>'",
        ),
        (
            &["--level", "10", "out/"],
            "invalid value '10' for '--level <LEVEL>'",
        ),
        (
            &["--every", "7m", "out/"],
            "invalid value '7m' for '--every <INTERVAL>': the interval must divide a day",
        ),
        (
            &["--every", "0s", "out/"],
            "invalid value '0s' for '--every <INTERVAL>'",
        ),
        (
            &["--every", "2d", "out/"],
            "invalid value '2d' for '--every <INTERVAL>'",
        ),
        (
            &["--every", "hourly", "out/"],
            "invalid value 'hourly' for '--every <INTERVAL>'",
        ),
        (
            &["--timestamp", "iso", "out/"],
            "invalid value 'iso' for '--timestamp <FORMAT>'",
        ),
        (
            &["--compress", "bzip2", "out/"],
            "invalid value 'bzip2' for '--compress <METHOD>'",
        ),
        (
            &["--compress-threads", "0", "out/"],
            "invalid value '0' for '--compress-threads <N>'",
        ),
        (
            &["--compress-threads", "65", "out/"],
            "invalid value '65' for '--compress-threads <N>'",
        ),
        (&["--keep", "-3", "out/"], "unexpected argument '-3'"),
        (
            &["--keep", "many", "out/"],
            "invalid value 'many' for '--keep <N>'",
        ),
        (
            &["--max-age", "1w", "out/"],
            "invalid value '1w' for '--max-age <DURATION>'",
        ),
        (
            &["--max-total", "0", "out/"],
            "invalid value '0' for '--max-total <SIZE>'",
        ),
        // Retention that deletes every segment as soon as it is finished
        // is refused, the same way for all three options.
        (
            &["--keep", "0", "out/"],
            "invalid value '0' for '--keep <N>': the count must be at least 1",
        ),
        (
            &["--max-age", "0s", "out/"],
            "invalid value '0s' for '--max-age <DURATION>': the duration must be greater than zero",
        ),
        (
            &["--max-age", "0d", "out/"],
            "invalid value '0d' for '--max-age <DURATION>': the duration must be greater than zero",
        ),
        (
            &["--max-total", "0K", "out/"],
            "invalid value '0K' for '--max-total <SIZE>': size must be greater than zero",
        ),
        // An empty hook would have sh run each segment as a program.
        (
            &["--on-rotate", "", "out/"],
            "invalid value '' for '--on-rotate <CMD>': expected a shell command",
        ),
        (
            &["--on-rotate", "  \t", "out/"],
            "for '--on-rotate <CMD>': expected a shell command",
        ),
        // Set-user-ID, set-group-ID and sticky bits are never wanted on a
        // log file or its directory (a root logpipe would make setuid root
        // files).
        (
            &["--mode", "4755", "out/"],
            "invalid value '4755' for '--mode <OCTAL>': permission bits go up to 0777",
        ),
        (
            &["--mode", "2640", "out/"],
            "invalid value '2640' for '--mode <OCTAL>': permission bits go up to 0777",
        ),
        (
            &["--mode", "01640", "out/"],
            "invalid value '01640' for '--mode <OCTAL>': permission bits go up to 0777",
        ),
        (
            &["--dir-mode", "1777", "out/"],
            "invalid value '1777' for '--dir-mode <OCTAL>': permission bits go up to 0777",
        ),
        (
            &["--dir-mode", "2750", "out/"],
            "invalid value '2750' for '--dir-mode <OCTAL>': permission bits go up to 0777",
        ),
        (
            &["--shutdown-timeout", "5", "out/"],
            "invalid value '5' for '--shutdown-timeout <DURATION>'",
        ),
        (
            &["--mode", "0999", "out/"],
            "invalid value '0999' for '--mode <OCTAL>'",
        ),
        (
            &["--dir-mode", "77777", "out/"],
            "invalid value '77777' for '--dir-mode <OCTAL>'",
        ),
        (
            &["--name", "a/b", "out/"],
            "invalid value 'a/b' for '--name <NAME>'",
        ),
        (
            &["--name", "", "out/"],
            "invalid value '' for '--name <NAME>'",
        ),
        // Two options that do not go together: --name with a file TARGET.
        (
            &["--name", "app.log", "out/file"],
            "--name only applies when TARGET is a directory",
        ),
        (
            &["--generate", "tcsh"],
            "invalid value 'tcsh' for '--generate <WHAT>'",
        ),
        // --generate stands alone: it never writes a log.
        (
            &["--generate", "man", "out/"],
            "the argument '--generate <WHAT>' cannot be used with",
        ),
        // `x/..` steps out of a directory that is not there.
        (
            &["newd/.."],
            "TARGET ends in '..' but is not an existing directory",
        ),
        (
            &["newd/../"],
            "TARGET ends in '..' but is not an existing directory",
        ),
        (&["--bogus", "out/"], "unexpected argument '--bogus'"),
        (&["out/", "more/"], "unexpected argument 'more/'"),
        (&[], "the following required arguments were not provided"),
    ];
    assert!(cases.len() >= 20);
    for (args, message) in cases {
        let env = TestEnv::new();
        let run = env.run(args, b"a line\n");
        assert_eq!(run.status.code(), Some(2), "{args:?}: {run:?}");
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{args:?}: {}", run.stderr);
        assert!(first.contains(message), "{args:?}: {}", run.stderr);
        let left: Vec<_> = fs::read_dir(env.path("")).unwrap().collect();
        assert!(
            left.is_empty(),
            "{args:?} created something:\n{}",
            env.listing()
        );
    }
}

#[test]
fn a_file_where_a_directory_must_be_is_one_line_and_exit_1() {
    let env = TestEnv::new();
    fs::write(env.path("file"), "not a directory\n").unwrap();
    for target in ["file/", "file/sub/app.log"] {
        let run = env.run(&[target], b"a line\n");
        assert_eq!(run.status.code(), Some(1), "{target}: {run:?}");
        assert!(
            run.stderr
                .starts_with("logpipe: unable to create directory file"),
            "{target}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{target}: {}", run.stderr);
    }
    assert_eq!(
        fs::read_to_string(env.path("file")).unwrap(),
        "not a directory\n"
    );
}

#[test]
fn a_directory_without_write_permission_is_one_line_and_exit_1() {
    let env = TestEnv::new();
    let locked = env.path("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let mut cmd = env.cmd(&["locked/app.log"]);
    // Root ignores permission bits, so as root run logpipe as nobody (and
    // let nobody into the test directory): the same refusal, for real.
    if unsafe { libc::geteuid() } == 0 {
        fs::set_permissions(env.path(""), fs::Permissions::from_mode(0o755)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    let describe = format!("{cmd:?}");
    let run = env.run_fed(cmd, |stdin| {
        use std::io::Write;
        let _ = stdin.write_all(b"a line\n");
    });
    assert_eq!(run.status.code(), Some(1), "{describe}: {run:?}");
    assert!(
        run.stderr
            .starts_with("logpipe: unable to lock locked/.app.log.lock: Permission denied"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(fs::read_dir(&locked).unwrap().count(), 0);
}

#[test]
fn help_reads_like_a_man_page() {
    let env = TestEnv::new();
    let out = env.cmd(&["--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for part in [
        "Usage: logpipe [OPTIONS] <TARGET>",
        "| logpipe",
        "ACTIVE.YYYY-MM-DD.N",
        "Exit status:",
        "--size <SIZE>",
    ] {
        assert!(help.contains(part), "--help lacks {part:?}:\n{help}");
    }
}

/// `logpipe ARGS` run with no terminal and no COLUMNS: its stdout.
fn help_text(args: &[&str]) -> String {
    let env = TestEnv::new();
    let out = env.cmd(args).env_remove("COLUMNS").output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn short_help_has_one_short_line_per_option() {
    let help = help_text(&["-h"]);
    for line in help.lines() {
        assert!(line.chars().count() <= 100, "over 100 columns: {line:?}");
    }
    // Every line of the option list starts an option: none wraps onto a
    // second line, as in ripgrep's and fd's -h.
    let options: Vec<&str> = help
        .split("Options:\n")
        .nth(1)
        .expect("an Options section")
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(options.len() >= 18, "{help}");
    for line in &options {
        assert!(
            line.starts_with("  -") || line.starts_with("      --"),
            "a continuation line in -h: {line:?}\n{help}"
        );
    }
    // Each default is said once, by clap, not again in the text.
    for (help, flag) in [(&help, "-h"), (&help_text(&["--help"]), "--help")] {
        assert!(!help.contains("By default, this is"), "{flag}:\n{help}");
        for default in ["[default: 100M]", "[default: gzip]", "[default: 30s]"] {
            assert_eq!(help.matches(default).count(), 1, "{flag}: {default}");
        }
    }
}

#[test]
fn long_help_keeps_the_long_text_and_wraps() {
    let help = help_text(&["--help"]);
    for line in help.lines() {
        assert!(line.chars().count() <= 100, "over 100 columns: {line:?}");
    }
    let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in [
        "Plain bytes, or a number with K, M, G, T",
        "`drop` discards input, counts it",
        "Hooks run one at a time",
    ] {
        assert!(words.contains(part), "--help lacks {part:?}:\n{help}");
    }
}

#[test]
fn fsync_help_says_the_worker_syncs_after_the_rename() {
    // The worker thread fsyncs finished segments, after their rename, in
    // batches with the state file and the directory (see the README);
    // nothing is synced before the rename any more.
    let help = help_text(&["--help"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let man = generated("man").replace("\\-", "-");
    let man = man.split_whitespace().collect::<Vec<_>>().join(" ");
    for (what, text) in [("--help", &help), ("the man page", &man)] {
        assert!(
            !text.contains("before each segment is renamed"),
            "{what} says fsync happens before the rename"
        );
        for part in [
            "soon after its rename",
            "the worker thread fsyncs finished segments in batches",
            "then the state file and the directory",
        ] {
            assert!(text.contains(part), "{what} lacks {part:?}");
        }
    }
}

#[test]
fn created_files_and_directories_get_the_modes_asked_for() {
    let env = TestEnv::new();
    // 0620 and 0710 differ from what the usual umask (022) would leave, so
    // an unapplied mode shows.
    let run = env.run(
        &[
            "--size",
            "8",
            "--mode",
            "0620",
            "--dir-mode",
            "0710",
            "new/dir/",
        ],
        b"one line\ntwo lines\n",
    );
    assert!(run.status.success(), "{run:?}");
    let mode = |rel: &str| fs::metadata(env.path(rel)).unwrap().permissions().mode() & 0o7777;
    let segment = env.segments("new/dir/current")[0].path.clone();
    for file in [
        "new/dir/current",
        "new/dir/.current.lock",
        "new/dir/.current.state",
        segment.to_str().unwrap(),
    ] {
        assert_eq!(mode(file), 0o620, "{file}");
    }
    let umask = unsafe {
        let old = libc::umask(0);
        libc::umask(old);
        old
    };
    for dir in ["new", "new/dir"] {
        assert_eq!(mode(dir), 0o710 & !umask, "{dir}");
    }
}

#[test]
fn version_names_the_package_version() {
    let env = TestEnv::new();
    let out = env.cmd(&["--version"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("logpipe {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// Runs `logpipe --generate WHAT`, which must need no TARGET, exit 0, say
/// nothing on stderr and create nothing; returns what it printed.
fn generated(what: &str) -> String {
    let env = TestEnv::new();
    let out = env
        .cmd(&["--generate", what])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "--generate {what}: {out:?}");
    assert!(out.stderr.is_empty(), "--generate {what}: {out:?}");
    assert_eq!(
        fs::read_dir(env.path("")).unwrap().count(),
        0,
        "--generate {what} created something:\n{}",
        env.listing()
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn generate_man_prints_a_man_page() {
    let man = generated("man");
    assert!(man.starts_with(".TH LOGPIPE 1 "), "{man}");
    // roff writes `-` as `\-`.
    for part in [
        ".SH NAME\nlogpipe \\- ",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        "\\-\\-size",
        "\\-\\-on\\-rotate",
        ".SH FILES",
        ".SH SIGNALS",
        ".SH \"EXIT STATUS\"",
    ] {
        assert!(man.contains(part), "the man page lacks {part:?}:\n{man}");
    }
    // Hidden options stay out of it, as out of --help.
    for hidden in ["debug\\-clock", "generate"] {
        assert!(!man.contains(hidden), "the man page shows {hidden:?}");
    }
}

/// The man page renders with groff without a warning.
#[test]
#[ignore = "installs groff-base (groff) with apt-get"]
fn generate_man_renders_with_groff_without_warnings() {
    let man = generated("man");
    ensure_program("groff", "groff-base");
    let env = TestEnv::new();
    fs::write(env.path("logpipe.1"), &man).unwrap();
    let out = Command::new("groff")
        // -ww: every warning; -P-cbou: plain text, no bold or underline.
        .args(["-man", "-Tutf8", "-ww", "-P-cbou", "logpipe.1"])
        .current_dir(env.path(""))
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "groff: {out:?}");
    assert!(
        out.stderr.is_empty(),
        "groff warns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "--size <SIZE>",
        "EXIT STATUS",
    ] {
        assert!(text.contains(part), "rendered page lacks {part:?}:\n{text}");
    }
    // The synopsis names each option's value, and never breaks an option
    // from its value or an option name at its dashes.
    let synopsis: String = text
        .split("SYNOPSIS")
        .nth(1)
        .and_then(|rest| rest.split("DESCRIPTION").next())
        .expect("a SYNOPSIS section")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for part in [
        "logpipe [--name NAME] [--size SIZE] [--every INTERVAL] [--utc]",
        "[--max-age DURATION]",
        "[--shutdown-timeout DURATION]",
        "[--dir-mode OCTAL] TARGET",
    ] {
        assert!(
            synopsis.contains(part),
            "synopsis lacks {part:?}: {synopsis}"
        );
    }
}

#[test]
fn generate_bash_completion_loads_and_completes() {
    let script = generated("bash");
    assert!(script.contains("complete -F _logpipe"), "{script}");
    assert!(script.contains("--size"), "{script}");
    assert!(!script.contains("--debug-clock"), "{script}");
    let env = TestEnv::new();
    fs::write(env.path("logpipe.bash"), &script).unwrap();
    // Source it as bash-completion would, then ask it what `--comp<TAB>`
    // and `--compress <TAB>` complete to.
    let check = r#"
        source ./logpipe.bash
        complete -p logpipe
        COMP_WORDS=(logpipe --comp); COMP_CWORD=1
        _logpipe logpipe --comp logpipe
        echo "options: ${COMPREPLY[*]}"
        COMP_WORDS=(logpipe --compress ""); COMP_CWORD=2
        _logpipe logpipe "" --compress
        echo "values: ${COMPREPLY[*]}"
    "#;
    let out = Command::new("bash")
        .args(["-c", check])
        .current_dir(env.path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    for line in [
        "complete -o bashdefault -o default -o nosort -F _logpipe logpipe",
        "options: --compress --compress-threads",
        "values: gzip zstd none",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn generate_zsh_and_fish_completions_name_the_options() {
    let zsh = generated("zsh");
    assert!(zsh.starts_with("#compdef logpipe\n"), "{zsh}");
    assert!(zsh.contains("'--size=["), "{zsh}");
    let fish = generated("fish");
    assert!(fish.contains("complete -c logpipe -l size "), "{fish}");
    for script in [&zsh, &fish] {
        assert!(script.contains("gzip"), "{script}");
        assert!(!script.contains("debug-clock"), "{script}");
    }
}

/// zsh's and fish's own parsers accept the completion scripts.
#[test]
#[ignore = "installs zsh and fish with apt-get"]
fn generate_zsh_and_fish_completions_parse() {
    for (shell, script) in [("zsh", generated("zsh")), ("fish", generated("fish"))] {
        ensure_program(shell, shell);
        let env = TestEnv::new();
        fs::write(env.path("script"), script).unwrap();
        let out = Command::new(shell)
            .args(["-n", "script"])
            .current_dir(env.path(""))
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell} -n: {out:?}");
    }
}

#[test]
fn generate_with_an_unknown_value_exits_2_naming_it() {
    let env = TestEnv::new();
    let out = env.cmd(&["--generate", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: invalid value 'tcsh' for '--generate <WHAT>'\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: man, bash, zsh, fish]"),
        "{stderr}"
    );
}

#[test]
fn generate_into_a_closed_pipe_is_not_an_error() {
    // `logpipe --generate man | head -1`: the reader going away is the
    // reader's business.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let env = TestEnv::new();
    let out = env
        .cmd(&["--generate", "man"])
        .stdout(writer)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn readme_install_commands_work_as_written() {
    // The README's block of `--generate` commands, run as written, except
    // that / is the test directory: on a fresh system none of the target
    // directories exist.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("--generate man"))
        .expect("a README block with the --generate commands");
    let env = TestEnv::new();
    let root = env.path("root");
    fs::create_dir(&root).unwrap();
    let root = root.to_str().unwrap();
    let script = block
        .replace(" /usr/", &format!(" {root}/usr/"))
        .replace(" /etc/", &format!(" {root}/etc/"));
    assert!(
        block.match_indices(" /").all(|(at, _)| {
            let path = &block[at + 2..];
            path.starts_with("usr/") || path.starts_with("etc/")
        }),
        "a path the test does not move: {block}"
    );
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_logpipe"))
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = Command::new("sh")
        .args(["-e", "-c", &script])
        .env("PATH", path)
        .current_dir(env.path(""))
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}\n{out:?}");
    for (file, start) in [
        ("usr/local/share/man/man1/logpipe.1", ".TH LOGPIPE 1"),
        ("usr/local/share/bash-completion/completions/logpipe", ""),
        (
            "usr/local/share/zsh/site-functions/_logpipe",
            "#compdef logpipe",
        ),
        ("etc/fish/completions/logpipe.fish", ""),
    ] {
        let text = fs::read_to_string(env.path("root").join(file)).unwrap();
        assert!(
            text.len() > 100 && text.starts_with(start),
            "{file}: {text}"
        );
    }
}

#[test]
fn a_target_ending_in_a_dot_is_a_directory() {
    for target in ["newd/.", "newd/./", "sub/newd/."] {
        let env = TestEnv::new();
        let run = env.run(&[target], b"a line\n");
        assert!(run.status.success(), "{target}: {run:?}");
        assert!(run.stderr.is_empty(), "{target}: {run:?}");
        let dir = target.trim_end_matches('/').trim_end_matches("/.");
        assert!(
            env.path(dir).is_dir(),
            "{target}: no directory {dir}:\n{}",
            env.listing()
        );
        assert_eq!(
            fs::read(env.path(dir).join("current")).unwrap(),
            b"a line\n",
            "{target}"
        );
    }
    // An existing directory, reached through `..`, is used as it is.
    let env = TestEnv::new();
    fs::create_dir_all(env.path("logs/sub")).unwrap();
    let run = env.run(&["logs/sub/.."], b"a line\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(fs::read(env.path("logs/current")).unwrap(), b"a line\n");
}
