//! Reading the guest console: the verdict line, fatal kernel messages, boot markers.

/// What the guest init prints once COMMAND has finished: `TRACER-VERDICT <nonce> exit=<n>`.
pub const VERDICT_TAG: &str = "TRACER-VERDICT";
/// What the guest init prints as soon as it runs (for the boot time).
pub const INIT_MARKER: &str = "TRACER-VM: init started";

/// COMMAND's exit status, if `line` is the verdict line of this run's `nonce`. Kernel
/// messages may share the console line, so the tag may be preceded by other text.
pub fn parse_verdict(line: &str, nonce: &str) -> Option<i32> {
    let at = line.find(VERDICT_TAG)?;
    let mut words = line[at + VERDICT_TAG.len()..].split_whitespace();
    if words.next()? != nonce {
        return None;
    }
    let status: i32 = words.next()?.strip_prefix("exit=")?.parse().ok()?;
    (0..=255).contains(&status).then_some(status)
}

/// A fatal kernel condition seen on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub kind: &'static str,
    pub line: String,
    /// The report's lines that say who and where ([`fatal_detail`]), as read within the grace.
    pub details: Vec<String>,
}

/// Strips a printk timestamp (`[   12.345678] `); None when the line has none.
fn kernel_message(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (stamp, msg) = rest.split_once(']')?;
    let stamp = stamp.trim();
    let (secs, frac) = stamp.split_once('.')?;
    (!secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit()))
        .then(|| msg.trim_start())
}

/// Whether a console line reports a kernel panic, Oops, BUG, soft lockup, hung task or
/// RCU stall. Apart from "Kernel panic - not syncing" (which every fatal condition ends in,
/// given the harness's command line), only timestamped kernel messages count, so that
/// COMMAND printing such words does not fail the run.
pub fn detect_fatal(line: &str) -> Option<Fatal> {
    let fatal = |kind| Some(Fatal { kind, line: line.trim().to_string(), details: Vec::new() });
    if line.contains("Kernel panic - not syncing") {
        return fatal("kernel panic");
    }
    let msg = kernel_message(line)?;
    // Subsystem prefixes such as "watchdog: " or "rcu: " come first.
    let msg = msg.strip_prefix("watchdog: ").or_else(|| msg.strip_prefix("rcu: ")).unwrap_or(msg);
    if msg.contains("soft lockup") && msg.starts_with("BUG:") {
        fatal("soft lockup")
    } else if msg.starts_with("BUG:") || msg.starts_with("kernel BUG at") {
        fatal("kernel BUG")
    } else if msg.starts_with("Oops:") || msg.starts_with("general protection fault") {
        fatal("kernel Oops")
    } else if msg.starts_with("INFO: task ") && msg.contains("blocked for more than") {
        fatal("hung task")
    } else if msg.starts_with("INFO: rcu_") && (msg.contains("detected stall") || msg.contains("self-detected stall")) {
        fatal("RCU stall")
    } else {
        None
    }
}

/// At most this many lines of a fatal report are quoted (see [`fatal_detail`]).
pub const FATAL_DETAILS: usize = 8;

/// A line of the report that follows a fatal message and says who and where: the stalled
/// CPUs and tasks of an RCU stall (`rcu: \t...`), the task a backtrace belongs to (`CPU: n
/// ... PID: p Comm: c`, `task:c state:...`) and where it was (`RIP: ...`). Quoted in the
/// failure so that a run whose console log is out of reach (CI) still tells who stalled.
pub fn fatal_detail(line: &str) -> Option<String> {
    let msg = kernel_message(line)?;
    let who = msg.starts_with("rcu: \t")
        || msg.starts_with("RIP: ")
        || msg.starts_with("task:")
        || (msg.starts_with("CPU: ") && msg.contains(" Comm: "));
    who.then(|| msg.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Drops carriage returns, NULs and terminal escape sequences from console bytes: the
/// firmware sends "reset terminal" and "clear screen" sequences that would wipe the
/// user's terminal and clutter the log. Keeps its state across chunks.
#[derive(Debug, Default)]
pub struct EscapeFilter {
    state: EscapeState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum EscapeState {
    #[default]
    Text,
    /// After ESC.
    Escape,
    /// Inside `ESC [ ... final`.
    Csi,
}

impl EscapeFilter {
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match self.state {
                EscapeState::Text => match b {
                    0x1b => EscapeState::Escape,
                    b'\r' | 0 => EscapeState::Text,
                    _ => {
                        out.push(b);
                        EscapeState::Text
                    }
                },
                EscapeState::Escape if b == b'[' => EscapeState::Csi,
                EscapeState::Escape => EscapeState::Text,
                EscapeState::Csi if (0x40..=0x7e).contains(&b) => EscapeState::Text,
                EscapeState::Csi => EscapeState::Csi,
            };
        }
    }
}

/// Quotes one word for a POSIX shell.
pub fn sh_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b)) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The guest's command script: a single argument is a shell command line (as with ssh);
/// several are a program and its arguments, each quoted.
pub fn command_script(args: &[String]) -> String {
    let body = match args {
        [one] => one.clone(),
        _ => args.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" "),
    };
    format!("# written by cargo xtask vm: the COMMAND to run\n{body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_need_the_nonce() {
        assert_eq!(parse_verdict("TRACER-VERDICT abc exit=3", "abc"), Some(3));
        assert_eq!(parse_verdict("[ 1.2] foo TRACER-VERDICT abc exit=0\r", "abc"), Some(0));
        assert_eq!(parse_verdict("TRACER-VERDICT abd exit=3", "abc"), None);
        assert_eq!(parse_verdict("TRACER-VERDICT  exit=3", "abc"), None);
        assert_eq!(parse_verdict("TRACER-VERDICT abc exit=", "abc"), None);
        assert_eq!(parse_verdict("TRACER-VERDICT abc exit=x", "abc"), None);
        assert_eq!(parse_verdict("TRACER-VERDICT abc exit=256", "abc"), None);
        assert_eq!(parse_verdict("TRACER-VERDICT abc", "abc"), None);
        assert_eq!(parse_verdict("echo TRACER-VERDICT", "abc"), None);
    }

    #[test]
    fn fatal_kernel_messages() {
        let k = |l: &str| detect_fatal(l).map(|f| f.kind);
        assert_eq!(k("[   12.345678] Kernel panic - not syncing: sysrq triggered crash"), Some("kernel panic"));
        assert_eq!(k("Kernel panic - not syncing: Attempted to kill init!"), Some("kernel panic"));
        assert_eq!(k("[    3.1] BUG: kernel NULL pointer dereference, address: 0000000000000000"), Some("kernel BUG"));
        assert_eq!(k("[    3.1] kernel BUG at mm/gup.c:120!"), Some("kernel BUG"));
        assert_eq!(k("[    3.1] Oops: 0002 [#1] PREEMPT SMP NOPTI"), Some("kernel Oops"));
        assert_eq!(k("[   44.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [fio:99]"), Some("soft lockup"));
        assert_eq!(k("[  243.1] INFO: task fio:123 blocked for more than 120 seconds."), Some("hung task"));
        assert_eq!(k("[   60.2] rcu: INFO: rcu_preempt self-detected stall on CPU"), Some("RCU stall"));
        assert_eq!(k("[   60.2] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"), Some("RCU stall"));
        // Not fatal: ordinary messages, and COMMAND output without a timestamp.
        assert_eq!(k("[    0.5] Run /init as init process"), None);
        assert_eq!(k("BUG: this is just test output"), None);
        assert_eq!(k("Oops: so is this"), None);
        assert_eq!(k("[x.y] BUG: not a timestamp"), None);
        assert_eq!(k(""), None);
    }

    #[test]
    fn fatal_details_say_who_and_where() {
        let d = |l: &str| fatal_detail(l);
        assert_eq!(
            d("[   26.7] rcu: \t1-...!: (0 ticks this GP) idle=1234/1/0x4000 softirq=10/10 fqs=0"),
            Some("rcu: 1-...!: (0 ticks this GP) idle=1234/1/0x4000 softirq=10/10 fqs=0".to_string())
        );
        assert_eq!(
            d("[   26.7] CPU: 1 UID: 0 PID: 245 Comm: tracer Not tainted 7.2.13+deb14-cloud-amd64 #1"),
            Some("CPU: 1 UID: 0 PID: 245 Comm: tracer Not tainted 7.2.13+deb14-cloud-amd64 #1".to_string())
        );
        assert_eq!(d("[   26.7] RIP: 0010:do_check+0x1a2/0x3000"), Some("RIP: 0010:do_check+0x1a2/0x3000".to_string()));
        assert_eq!(
            d("[   26.7] task:tracer state:R  running task"),
            Some("task:tracer state:R running task".to_string())
        );
        // Registers, plain backtrace lines and COMMAND output are not quoted.
        assert_eq!(d("[   26.7] RSP: 0018:ffffb0c0 EFLAGS: 00000246"), None);
        assert_eq!(d("[   26.7]  bpf_check+0x1234/0x2000"), None);
        assert_eq!(d("[   26.7] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"), None);
        assert_eq!(d("RIP: not a kernel message"), None);
    }

    #[test]
    fn escape_sequences_are_dropped() {
        let mut f = EscapeFilter::default();
        let mut out = Vec::new();
        f.filter(b"\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\n", &mut out);
        // A sequence split across chunks.
        f.filter(b"a\x1b[0", &mut out);
        f.filter(b"1;31mred\x1b[0m\n", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "SeaBIOS\nared\n");
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("plain-word_1.txt"), "plain-word_1.txt");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME;`x`"), "'$HOME;`x`'");
        assert_eq!(
            command_script(&["sh".into(), "-c".into(), "echo 'hi'; exit 3".into()]),
            "# written by cargo xtask vm: the COMMAND to run\nsh -c 'echo '\\''hi'\\''; exit 3'\n"
        );
        assert!(command_script(&["echo c > /proc/sysrq-trigger".into()]).contains("\necho c > /proc/sysrq-trigger\n"));
    }
}
