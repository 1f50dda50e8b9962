//! Facts about processes read from /proc: whether a pid is still the process we started (pids are
//! reused) and whether it has already exited.

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), and whether it
/// is a zombie. None if the process does not exist.
pub fn start_time_and_zombie(pid: i32) -> Option<(u64, bool)> {
    let stat = read_proc_file(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state); field 22 (starttime) is at index 19.
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// The start time of `pid`, for recording alongside the pid.
pub fn start_time(pid: i32) -> Option<u64> {
    start_time_and_zombie(pid).map(|(t, _)| t)
}

/// Whether `pid` is alive (not a zombie) and is the process that started at `start_time`.
pub fn is_same_live_process(pid: i32, start_time: u64) -> bool {
    pid > 0 && matches!(start_time_and_zombie(pid), Some((t, false)) if t == start_time)
}

/// How many threads this process has (`Threads:` of /proc/self/status; 1 when unreadable). A
/// caller with more than one must not fork.
pub fn thread_count() -> usize {
    read_proc_file("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Reads a /proc file whole. A proc file's size reads as 0, so `std::fs::read_to_string` starts
/// with a 32-byte probe and doubles from there (eight reads for a 1.5 KB mountinfo); a buffer
/// reserved up front takes a page per read.
pub fn read_proc_file(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(8192);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}
