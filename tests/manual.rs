//! `sealfs completions` and `sealfs man`: what they produce works in the programs that read it
//! (bash's completion, man/groff), and covers every command. No server needed.

use std::process::Command;

fn sealfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sealfs"))
}

/// What bash completes for the words of `line` (the last word is the one being completed).
fn bash_complete(script: &str, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT={point}\n\
         _sealfs sealfs '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_options() {
    let out = sealfs().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert_eq!(bash_complete(&script, "sealfs mo"), ["mount"]);
    assert_eq!(bash_complete(&script, "sealfs ro"), ["rotate-key"]);
    let opts = bash_complete(&script, "sealfs mount --stale");
    assert_eq!(opts, ["--stale-upload-age"]);
    let modes = bash_complete(&script, "sealfs init --encryption s");
    assert_eq!(modes, ["sse-s3", "sse-kms", "sse-c"]);
}

#[test]
fn every_shell_gets_a_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = sealfs().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("rotate-key"), "{shell}: {script}");
    }
    let out = sealfs().args(["completions", "tcsh"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn man_pages_render_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = sealfs().arg("man").arg(&pages).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = sealfs().arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    // Every command `--help` lists has its page.
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    for cmd in commands {
        assert!(pages.join(format!("sealfs-{cmd}.1")).is_file(), "{cmd}");
    }
    let text = Command::new("groff")
        // Plain text (no overstrike), lines long enough not to hyphenate.
        .args(["-man", "-Tutf8", "-P-cbou", "-rLL=400n", "-rHY=0"])
        .arg(pages.join("sealfs-mount.1"))
        .output()
        .expect("groff");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("sealfs-mount"), "{text}");
    assert!(text.contains("stale-upload-age"), "{text}");
    assert!(
        text.contains("Multipart uploads a crashed sealfs mount left"),
        "{text}"
    );
}
