//! `--generate`: the man page and the shell completion scripts, made from
//! the clap definition of the command line, so they never fall behind
//! `--help`.
//!
//! Nothing of logpipe's is imported here: the caller hands over the
//! `clap::Command`, and the man page's closing sections come from its
//! `after_long_help`.

use std::io::Write;

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page, logpipe(1), in roff.
    Man,
    /// A bash completion script.
    Bash,
    /// A zsh completion script.
    Zsh,
    /// A fish completion script.
    Fish,
}

/// The man page or completion script `what` for the command `cmd`
/// (`Args::command()`).
pub fn generate(what: Generate, cmd: clap::Command) -> Vec<u8> {
    let shell = match what {
        Generate::Man => return man_page(cmd).into_bytes(),
        Generate::Bash => clap_complete::Shell::Bash,
        Generate::Zsh => clap_complete::Shell::Zsh,
        Generate::Fish => clap_complete::Shell::Fish,
    };
    // clap_complete offers hidden options too (clap_mangen leaves them
    // out), so completions get a command without them: no --debug-clock,
    // no --generate.
    let visible: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .cloned()
        .collect();
    let mut visible = clap::Command::new("logpipe")
        .version(env!("CARGO_PKG_VERSION"))
        .args(visible);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut visible, "logpipe", &mut out);
    out
}

/// What roff writes before each piece it renders: a definition of the
/// string `Aq` (an apostrophe) that the pieces use.
const ROFF_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// The man page: clap_mangen's sections, except for two things. The `.TH`
/// line is written here, since clap_mangen drops its empty date argument
/// and so shifts the version into the date's place; and the parts of the
/// long help's closing text become sections of their own (EXAMPLE, FILES,
/// SIGNALS, EXIT STATUS) with their indented tables kept as laid out,
/// where clap_mangen would fill all of it into one EXTRA section.
fn man_page(cmd: clap::Command) -> String {
    let mut page = format!(
        ".TH {} 1 \"\" \"{} {}\" \"User Commands\"\n{ROFF_PREAMBLE}",
        cmd.get_name().to_uppercase(),
        cmd.get_name(),
        cmd.get_version().unwrap_or_default(),
    );
    let after_help = cmd
        .get_after_long_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    let after_help = after_help_sections(&after_help);
    let synopsis = synopsis_section(&cmd);
    let man = clap_mangen::Man::new(cmd);
    type Render<'a> = &'a dyn Fn(&clap_mangen::Man, &mut dyn Write) -> std::io::Result<()>;
    let parts: [Render; 6] = [
        &clap_mangen::Man::render_name_section,
        &|_, out| synopsis.to_writer(out),
        &clap_mangen::Man::render_description_section,
        &clap_mangen::Man::render_options_section,
        &|_, out| after_help.to_writer(out),
        &clap_mangen::Man::render_version_section,
    ];
    for render in parts {
        let mut part = Vec::new();
        render(&man, &mut part).expect("writing to a Vec never fails");
        let part = String::from_utf8(part).expect("clap and roff write UTF-8");
        // Once, above, is enough (should roff change it, a repeat is
        // harmless).
        page.push_str(part.strip_prefix(ROFF_PREAMBLE).unwrap_or(&part));
    }
    page
}

/// The SYNOPSIS section, with each option's value as `--help` names it
/// (`[--size SIZE]`), where clap_mangen writes only `[--size]`. It uses the
/// man macros made for this, `.SY` and `.OP` (groff and mandoc), which
/// keep an option and its value on one line. Hidden options stay out, as
/// in `--help`.
fn synopsis_section(cmd: &clap::Command) -> roff::Roff {
    let value_names = |arg: &clap::Arg| {
        arg.get_value_names()
            .map(|names| names.iter().map(ToString::to_string).collect::<Vec<_>>())
            .unwrap_or_else(|| vec![arg.get_id().to_string().to_uppercase()])
            .join(" ")
    };
    let mut roff = roff::Roff::new();
    roff.control("SH", ["SYNOPSIS"]);
    roff.control("SY", [cmd.get_name()]);
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() || arg.is_positional() {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        // A control line's arguments are not escaped by roff: written as
        // `\-`, a dash is a minus sign, which groff neither breaks at nor
        // turns into a hyphen.
        let option = format!("--{long}").replace('-', "\\-");
        if arg.get_action().takes_values() {
            roff.control("OP", [option.as_str(), value_names(arg).as_str()]);
        } else {
            roff.control("OP", [option.as_str()]);
        }
    }
    for arg in cmd.get_positionals().filter(|arg| !arg.is_hide_set()) {
        roff.text([roff::italic(value_names(arg))]);
    }
    roff.control("YS", []);
    roff
}

/// The long help's closing text as man page sections: a line at the left
/// margin that ends in `:` is a heading, indented lines are kept as they
/// are (tables), other lines are filled, and a blank line starts a
/// paragraph.
fn after_help_sections(text: &str) -> roff::Roff {
    let mut roff = roff::Roff::new();
    let mut preformatted = false;
    // A blank line starts a paragraph, unless a heading comes next.
    let mut paragraph = false;
    for line in text.lines() {
        let indented = line.starts_with(' ');
        if preformatted && !indented {
            roff.control("fi", []);
            preformatted = false;
        }
        if line.is_empty() {
            paragraph = true;
            continue;
        }
        if let Some(heading) = line.strip_suffix(':').filter(|_| !indented) {
            roff.control("SH", [heading.to_uppercase().as_str()]);
            paragraph = false;
            continue;
        }
        if std::mem::take(&mut paragraph) {
            roff.control("PP", []);
        }
        if indented {
            if !preformatted {
                roff.control("nf", []);
                preformatted = true;
            }
            // The section already indents; keep the columns after it.
            roff.text([roff::roman(line.strip_prefix("  ").unwrap_or(line))]);
        } else {
            roff.text([roff::roman(line)]);
        }
    }
    if preformatted {
        roff.control("fi", []);
    }
    roff
}
