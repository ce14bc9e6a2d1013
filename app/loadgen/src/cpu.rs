//! The CPU every process on this machine spent over the measured window (`--machine-cpu`),
//! read from /proc. Where the generator and everything it drives share the cores, what a
//! request costs is the CPU it takes everywhere (the services, the broker, the databases, the
//! trace collector), and throughput alone cannot say that.
//!
//! Processes are grouped by program: an Agora role by its name (`agora order-service` is
//! `order-service`), Kafka's JVM as `kafka`, the kernel's own threads (the disk's writeback,
//! soft interrupts run as threads) as `kernel`, any other by its command name
//! (`postgres`, `jaeger`, `consul`). This generator counts as `loadgen`. A process that exits
//! inside the window is not seen; the long-lived ones a stack runs are.

use std::{collections::BTreeMap, fs};

use serde::Serialize;

/// What each process had used at one moment, and the machine's busy time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per process id: what it is, and its CPU time so far.
    processes: BTreeMap<u32, Process>,
    /// Ticks the CPUs spent on anything but idling, since boot (/proc/stat).
    busy: u64,
}

/// CPU seconds over a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MachineCpu {
    /// All CPUs' busy time, whoever spent it (the kernel's own work on interrupts included).
    pub busy_secs: f64,
    /// Per program: user and system time of all its processes.
    pub programs: BTreeMap<String, ProgramCpu>,
}

/// One process in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
struct Process {
    program: String,
    /// When it started, in clock ticks since boot: a process id used again is another process.
    started: u64,
    user: u64,
    system: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ProgramCpu {
    pub user_secs: f64,
    pub system_secs: f64,
}

/// Reads every process's CPU time now. Processes that vanish while being read are skipped.
pub fn snapshot() -> Snapshot {
    let own = std::process::id();
    let mut processes = BTreeMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let (Ok(stat), Ok(cmdline)) =
            (fs::read_to_string(format!("/proc/{pid}/stat")), fs::read(format!("/proc/{pid}/cmdline")))
        else {
            continue;
        };
        let Some(stat) = parse_stat(&stat) else { continue };
        let program = match () {
            () if pid == own => "loadgen".to_owned(),
            // A kworker's name changes with its work.
            () if stat.kernel => "kernel".to_owned(),
            () => program(stat.comm, &cmdline),
        };
        processes.insert(pid, Process { program, started: stat.started, user: stat.user, system: stat.system });
    }
    let busy = fs::read_to_string("/proc/stat").ok().and_then(|stat| busy_ticks(&stat)).unwrap_or(0);
    Snapshot { processes, busy }
}

/// The CPU spent from `before` to `after`. A process new in `after` counts from zero.
pub fn between(before: &Snapshot, after: &Snapshot) -> MachineCpu {
    let tick = 1.0 / ticks_per_second();
    let mut programs: BTreeMap<String, ProgramCpu> = BTreeMap::new();
    for (pid, now) in &after.processes {
        let (user_then, system_then) = match before.processes.get(pid) {
            Some(then) if then.started == now.started => (then.user, then.system),
            _ => (0, 0),
        };
        let spent = programs.entry(now.program.clone()).or_default();
        spent.user_secs += now.user.saturating_sub(user_then) as f64 * tick;
        spent.system_secs += now.system.saturating_sub(system_then) as f64 * tick;
    }
    programs.retain(|_, spent| spent.user_secs + spent.system_secs > 0.0);
    MachineCpu { busy_secs: after.busy.saturating_sub(before.busy) as f64 * tick, programs }
}

/// The fields of a `/proc/PID/stat` line that say what a process is and what it spent.
#[derive(Debug, PartialEq)]
struct Stat<'a> {
    comm: &'a str,
    /// A thread of the kernel's own (PF_KTHREAD in its flags).
    kernel: bool,
    user: u64,
    system: u64,
    started: u64,
}

/// Fields 2 (the command name, in parentheses, which may hold spaces and parentheses itself),
/// 9 (flags), 14 and 15 (user and system ticks) and 22 (start time) of proc(5).
fn parse_stat(stat: &str) -> Option<Stat<'_>> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat.get(close + 2..)?.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse().ok();
    const PF_KTHREAD: u64 = 0x0020_0000;
    let kernel = field(9)? & PF_KTHREAD != 0;
    Some(Stat { comm, kernel, user: field(14)?, system: field(15)?, started: field(22)? })
}

/// What a process is, for grouping (see the module's text).
fn program(comm: &str, cmdline: &[u8]) -> String {
    let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
    let first = args.next().unwrap_or_default();
    let name = first.rsplit('/').next().unwrap_or_default();
    if name == "agora"
        && let Some(role) = args.next().filter(|arg| !arg.is_empty() && !arg.starts_with('-'))
    {
        return role.into_owned();
    }
    if comm == "java" && cmdline.windows(b"kafka.Kafka".len()).any(|w| w == b"kafka.Kafka") {
        return "kafka".to_owned();
    }
    comm.to_owned()
}

/// The busy ticks of all CPUs from `/proc/stat`'s first line: user, nice, system, irq and
/// softirq (guest time is inside user already). Idle, I/O wait and steal (time the hypervisor
/// gave to another machine) are not this machine's work.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_ascii_whitespace().map(|t| t.parse().unwrap_or(0)).collect();
    Some([0, 1, 2, 5, 6].iter().map(|&i| ticks.get(i).copied().unwrap_or(0)).sum())
}

/// USER_HZ, the unit of /proc's CPU times: part of the kernel's ABI, 100 on x86 and ARM alike
/// (what `getconf CLK_TCK` prints).
fn ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_command_and_ticks_even_with_parentheses_in_the_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 95 0 0 20 0 9 0 123 0 0";
        let parsed = Stat { comm: "a (weird) name", kernel: false, user: 731, system: 95, started: 123 };
        assert_eq!(parse_stat(stat), Some(parsed));
        let kworker = "77 (kworker/u8:3+flush-254:0) I 2 0 0 0 -1 69238880 0 0 0 0 0 412 0 0 20 0 1 0 9 0 0";
        assert!(parse_stat(kworker).is_some_and(|stat| stat.kernel && stat.system == 412));
        assert_eq!(parse_stat("4242 (cut"), None);
        assert_eq!(parse_stat("4242 (short) S 1 4242"), None);
    }

    #[test]
    fn processes_are_grouped_by_role_broker_or_command() {
        assert_eq!(program("agora", b"/cache/release/agora\0order-service\0"), "order-service");
        assert_eq!(program("agora", b"/cache/release/agora\0--help\0"), "agora");
        assert_eq!(program("java", b"java\0-Xmx1g\0kafka.Kafka\0server.properties\0"), "kafka");
        assert_eq!(program("java", b"java\0-jar\0other.jar\0"), "java");
        assert_eq!(program("postgres", b"postgres: agora orders 127.0.0.1(5000) idle\0"), "postgres");
    }

    #[test]
    fn busy_time_leaves_out_idle_io_wait_and_steal() {
        assert_eq!(busy_ticks("cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n"), Some(21));
    }

    #[test]
    fn the_window_counts_what_each_program_spent_and_a_new_process_from_zero() {
        let process =
            |program: &str, started, user, system| Process { program: program.to_owned(), started, user, system };
        let before = Snapshot {
            processes: BTreeMap::from([
                (1, process("kafka", 7, 100, 50)),
                (2, process("postgres", 8, 10, 10)),
                (4, process("postgres", 9, 500, 500)),
            ]),
            busy: 1000,
        };
        // Process 3 is new, and id 4 now names another process that started later.
        let after = Snapshot {
            processes: BTreeMap::from([
                (1, process("kafka", 7, 300, 70)),
                (2, process("postgres", 8, 10, 10)),
                (3, process("postgres", 20, 30, 10)),
                (4, process("postgres", 30, 10, 10)),
            ]),
            busy: 1500,
        };
        let cpu = between(&before, &after);
        let ticks = |secs: f64| (secs * ticks_per_second()).round();
        assert_eq!(ticks(cpu.busy_secs), 500.0);
        let kafka = cpu.programs["kafka"];
        assert_eq!((ticks(kafka.user_secs), ticks(kafka.system_secs)), (200.0, 20.0));
        let postgres = cpu.programs["postgres"];
        assert_eq!((ticks(postgres.user_secs), ticks(postgres.system_secs)), (40.0, 20.0), "3 from zero, 4 anew");
    }

    #[test]
    fn this_process_is_seen_as_the_generator() {
        let now = snapshot();
        assert_eq!(now.processes[&std::process::id()].program, "loadgen");
        assert!(now.busy > 0, "/proc/stat read");
    }
}
