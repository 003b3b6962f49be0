//! `swarmwall man --out DIR` writes one manual page per command: the expected set is read
//! independently from the binary's own `--help` output (every `Commands:` entry, nested ones
//! too), each page must have NAME (with a description) and SYNOPSIS, and `man -l` must render
//! it in the C locale, as on a minimal server (groff warnings, e.g. a character it cannot
//! show, are failures). The packaging script installs them where `man` finds them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::harness::{BIN, run, text};

/// The subcommands `swarmwall PATH... --help` lists under `Commands:` (without `help`).
fn listed_subcommands(path: &[String]) -> Vec<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let output = run(&args);
    assert!(output.status.success(), "swarmwall {args:?}");
    let help = text(&output.stdout);
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path below `path` (depth first), as page names: `swarmwall-user-add`.
fn expected_pages(path: Vec<String>, pages: &mut BTreeSet<String>) {
    pages.insert(path.iter().fold("swarmwall".to_owned(), |name, part| {
        format!("{name}-{part}")
    }));
    for sub in listed_subcommands(&path) {
        let mut deeper = path.clone();
        deeper.push(sub);
        expected_pages(deeper, pages);
    }
}

/// `man -l PAGE` rendered to plain text, with groff's warnings on stderr; `None` without man.
fn render(page: &Path) -> Option<(String, String)> {
    let output = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C")
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .env("MANROFFOPT", "-ww")
        .output()
        .ok()?;
    assert!(output.status.success(), "man -l {}", page.display());
    Some((plain(&text(&output.stdout)), text(&output.stderr)))
}

/// Terminal output without its overstrike formatting (`X\bX` bold, `_\bX` underline).
fn plain(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    for c in rendered.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn every_command_has_a_page_with_name_and_synopsis_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let output = run(&["man", "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let mut expected = BTreeSet::new();
    expected_pages(Vec::new(), &mut expected);
    assert!(expected.contains("swarmwall-serve"), "{expected:?}");
    assert!(expected.contains("swarmwall-user-add"), "{expected:?}");
    assert!(
        !expected.contains("swarmwall-man"),
        "the man command is hidden"
    );
    let written: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .map(|name| {
            name.strip_suffix(".1")
                .expect("section 1 pages only")
                .to_owned()
        })
        .collect();
    assert_eq!(written, expected, "one page per command, no more");
    // The command lists what it wrote.
    assert_eq!(text(&output.stdout).lines().count(), expected.len());

    let mut man_missing = false;
    for name in &expected {
        let page = out.join(format!("{name}.1"));
        let roff = std::fs::read_to_string(&page).unwrap();
        assert!(roff.contains(".SH SYNOPSIS"), "{name}: no SYNOPSIS section");
        // NAME is `PAGE \- what it does` (roff escapes `-`): every command says what it is.
        let name_line = roff
            .lines()
            .skip_while(|line| *line != ".SH NAME")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no NAME section"));
        let (page_name, about) = name_line
            .split_once(" \\- ")
            .unwrap_or_else(|| panic!("{name}: NAME without a description: {name_line}"));
        assert_eq!(page_name.replace("\\-", "-"), *name);
        assert!(!about.trim().is_empty(), "{name}: empty description");
        let Some((rendered, warnings)) = render(&page) else {
            man_missing = true;
            continue;
        };
        assert!(rendered.contains("NAME"), "{name}: {rendered}");
        assert!(rendered.contains("SYNOPSIS"), "{name}: {rendered}");
        assert!(rendered.contains(name.as_str()), "{name}: {rendered}");
        assert!(
            warnings.trim().is_empty(),
            "{name}: groff warnings: {warnings}"
        );
    }
    if man_missing {
        eprintln!("SKIP: `man` is not installed; pages were checked but not rendered");
    }
}

#[test]
fn the_packaging_script_installs_gzipped_pages_that_man_finds() {
    use std::os::unix::fs::PermissionsExt;
    let mandir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/install-man-pages.sh");
    let output = Command::new(&script)
        .arg(BIN)
        .arg(mandir.path())
        .output()
        .expect("run packaging/install-man-pages.sh");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("installed "),
        "{}",
        text(&output.stdout)
    );
    for name in ["swarmwall", "swarmwall-serve", "swarmwall-user-add"] {
        let page = mandir.path().join(format!("man1/{name}.1.gz"));
        let mode = std::fs::metadata(&page)
            .unwrap_or_else(|error| panic!("{}: {error}", page.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
    }
    let Ok(rendered) = Command::new("man")
        .arg("-M")
        .arg(mandir.path())
        .arg("swarmwall-serve")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C")
        .output()
    else {
        eprintln!("SKIP: `man` is not installed; the installed pages were not looked up");
        return;
    };
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let rendered = plain(&text(&rendered.stdout));
    assert!(
        rendered.contains("swarmwall-serve - Run the SOCKS5 proxy"),
        "{rendered}"
    );
    assert!(rendered.contains("SYNOPSIS"), "{rendered}");
}
