//! What the throughput examples (and the streaming benches) share: command-line numbers, pinning
//! a thread to a CPU, and the process's CPU time.

/// The number after `name` in `args`, or `default` when `name` is absent.
pub fn flag(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a number"))?
            .parse()
            .map_err(|e| format!("{name}: {e}")),
    }
}

/// The text after `name` in `args`, if `name` is there.
pub fn text_flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

/// Prints the result of a random-read run (`throughput randread`, `tokio_throughput randread`):
/// the summary line, `extra` at its end, then the `IOPS=` line the scripts read.
#[allow(clippy::too_many_arguments)]
pub fn report_randread(
    runtime: &str,
    mode: &str,
    done: u64,
    bs: u64,
    qd: u64,
    file_size: u64,
    elapsed: f64,
    extra: &str,
) {
    println!(
        "randread on {runtime} ({mode}): {done} reads of {bs} B, qd {qd}, {} MiB file: \
         {:.0} reads/s = {:.0} MiB/s{extra}",
        file_size >> 20,
        done as f64 / elapsed,
        done as f64 * bs as f64 / (1 << 20) as f64 / elapsed
    );
    println!("IOPS={:.0}", done as f64 / elapsed);
}

/// Prints the result of a metadata run (`throughput meta`, `tokio_throughput meta`), then the
/// `FILES_PER_SEC=` line the scripts read.
pub fn report_meta(runtime: &str, files: u64, tasks: u64, secs: f64) {
    println!(
        "meta on {runtime}: {files} files (create, stat, rename, unlink), {tasks} tasks: \
         {:.0} files/s",
        files as f64 / secs
    );
    println!("FILES_PER_SEC={:.0}", files as f64 / secs);
}

/// Pins the calling thread to `cpu`, so runs do not differ by where the scheduler puts the
/// threads; says so on stderr if it cannot.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is far below CPU_SETSIZE; `set` is live.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        eprintln!(
            "note: cannot pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// User and system CPU time of the whole process so far (every thread).
pub fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// The next number of a xorshift sequence (`state` must start non-zero): random file offsets
/// that cost nothing next to the I/O they pick.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Reads a file once, so its pages sit in the page cache for the runs that follow.
pub fn warm_page_cache(path: &std::path::Path) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{path:?}: {e}"))?;
    std::io::copy(&mut file, &mut std::io::sink()).map_err(|e| format!("{path:?}: {e}"))?;
    Ok(())
}
