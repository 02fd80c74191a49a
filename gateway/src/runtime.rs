//! The async runtime the `agent-gate` binary runs on: how many worker threads it has, and the
//! priority of its threads.
//!
//! Every allowed call waits twice for the store's writer thread, one transaction at a time: it
//! is the stage all calls pass through in series. On a machine with few cores the runtime's
//! worker threads keep every core busy under load, and a writer woken for its next batch waits
//! for one of them to give up its core. On the 2-vCPU benchmark VM (`perf sched`, one second
//! under load) the writer spent 200 ms runnable but waiting, 93 µs per wake-up.
//!
//! So the runtime's worker threads run [`WORKER_NICE_INCREMENT`] nice levels below the process,
//! from the first time each one runs out of work, and the kernel gives the writer a core sooner:
//! 90 ms per second, 28 µs per wake-up, and about 4% more calls per second (paired runs; the
//! machine's own variation is larger). No other thread is lowered, but a new thread inherits
//! the priority of the thread that starts it: the store's writer and sync threads keep the
//! process's priority because `serve` and `demo` open the store at start-up from the main
//! thread, before any worker has started a thread. The price: against other processes of the
//! same priority, the gateway's request handling yields first. Only on Linux, where a nice value
//! belongs to a thread; elsewhere nothing changes.
//!
//! For the same reason the gateway runs one worker thread fewer than the cores it may use (at
//! least one; [`worker_threads`]), so the writer has a core of its own: on few cores, a worker
//! per core mostly adds a worker that spins looking for work and steals the other's tasks. On
//! the 2-vCPU benchmark VM (`bench_gateway` processes mode, two paired runs of three rounds, one
//! worker against two; medians): gateway CPU per allowed call 62.5 and 53.9 against 65.7 and
//! 64.6 µs over WebSocket, 90.8 and 84.5 against 110.7 and 104.7 µs over MCP; MCP calls per
//! second +10% and +14%, WebSocket −6% and +7% (the machine's own variation); latency one call
//! at a time no worse. `TOKIO_WORKER_THREADS` overrides the count.

use std::cell::Cell;
use std::io;
use std::num::NonZeroUsize;

/// How many nice levels below the process the runtime's worker threads run.
///
/// With `+5` a worker weighs a third of the writer when both want a core; `+10` measured no
/// better on the benchmark.
pub const WORKER_NICE_INCREMENT: i32 = 5;

/// The most worker threads `TOKIO_WORKER_THREADS` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

/// A `TOKIO_WORKER_THREADS` that is not a number of threads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "TOKIO_WORKER_THREADS={value:?} is not a number of worker threads: set a whole number from 1 \
     to {MAX_WORKER_THREADS}, or unset it for one fewer than the cores (at least one)"
)]
pub struct InvalidWorkerThreads {
    /// The value as it was set.
    pub value: String,
}

/// How many worker threads the gateway's runtime runs: `TOKIO_WORKER_THREADS` when it is set,
/// else one fewer than the cores this process may use, at least one (see the module docs).
pub fn worker_threads() -> Result<usize, InvalidWorkerThreads> {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    worker_threads_for(std::env::var("TOKIO_WORKER_THREADS").ok().as_deref(), cores)
}

/// [`worker_threads`] for an environment value `set` and `cores` cores.
fn worker_threads_for(set: Option<&str>, cores: usize) -> Result<usize, InvalidWorkerThreads> {
    match set {
        None => Ok(cores.saturating_sub(1).max(1)),
        Some(value) => match value.trim().parse::<usize>() {
            Ok(count) if (1..=MAX_WORKER_THREADS).contains(&count) => Ok(count),
            _ => Err(InvalidWorkerThreads {
                value: value.to_owned(),
            }),
        },
    }
}

/// A multi-threaded runtime builder (all drivers enabled, threads named `thread_name`) whose
/// worker threads lower their priority by [`WORKER_NICE_INCREMENT`] the first time they park.
///
/// ```
/// let runtime = agent_gate_gateway::runtime::multi_thread("agent-gate").build()?;
/// runtime.block_on(async { /* serve */ });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn multi_thread(thread_name: &str) -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .thread_name(thread_name)
        // Called by worker threads only (the blocking pool does not park this way), and from
        // the first park on, so before a worker has run much.
        .on_thread_park(lower_worker_priority_once);
    builder
}

thread_local! {
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

fn lower_worker_priority_once() {
    if LOWERED.replace(true) {
        return;
    }
    if let Err(error) = lower_current_thread_priority(WORKER_NICE_INCREMENT) {
        tracing::debug!(%error, "could not lower a runtime worker's priority; it keeps the process's");
    }
}

/// Raises the nice value of the calling thread (only) by `increment`, at most to 19, and
/// returns the new value. Raising it needs no privilege; nothing here lowers one.
///
/// On other systems than Linux a nice value belongs to the whole process, so this returns an
/// [`io::ErrorKind::Unsupported`] error and changes nothing.
pub fn lower_current_thread_priority(increment: i32) -> io::Result<i32> {
    #[cfg(target_os = "linux")]
    {
        let tid = current_thread_id();
        let target = (thread_nice(tid)? + increment.max(0)).min(19);
        // SAFETY: plain system call on this thread's id; no memory is passed.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(target)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = increment;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "per-thread priorities exist on Linux only",
        ))
    }
}

/// The calling thread's kernel id.
#[cfg(target_os = "linux")]
fn current_thread_id() -> libc::id_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    libc::id_t::try_from(tid).unwrap_or(0)
}

/// The nice value of thread `tid` of this process.
#[cfg(target_os = "linux")]
fn thread_nice(tid: libc::id_t) -> io::Result<i32> {
    // getpriority may return -1 as a value: errno tells an error apart.
    // SAFETY: errno is thread-local; getpriority takes no memory.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(nice)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice values of this process's threads whose (15-character) name is `name`.
    fn nice_of_threads_named(name: &str) -> Vec<i32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
                continue;
            };
            if comm.trim() == name {
                let tid: libc::id_t = task.file_name().to_str().unwrap().parse().unwrap();
                found.push(thread_nice(tid).unwrap());
            }
        }
        found
    }

    #[test]
    fn lowering_a_threads_priority_leaves_the_others_alone() {
        let here = thread_nice(current_thread_id()).unwrap();
        let (before, after) = std::thread::spawn(|| {
            let before = thread_nice(current_thread_id()).unwrap();
            let after = lower_current_thread_priority(3).unwrap();
            assert_eq!(thread_nice(current_thread_id()).unwrap(), after);
            (before, after)
        })
        .join()
        .unwrap();
        assert_eq!(after, (before + 3).min(19));
        assert_eq!(thread_nice(current_thread_id()).unwrap(), here);
    }

    #[test]
    fn one_core_is_left_to_the_store_writer() {
        assert_eq!(worker_threads_for(None, 1), Ok(1));
        assert_eq!(worker_threads_for(None, 2), Ok(1));
        assert_eq!(worker_threads_for(None, 8), Ok(7));
        assert_eq!(worker_threads_for(Some("3"), 2), Ok(3));
        assert_eq!(worker_threads_for(Some(" 2 "), 8), Ok(2));
    }

    #[test]
    fn a_worker_count_that_is_not_one_is_refused_with_the_fix() {
        for value in ["0", "-1", "two", "", "1025"] {
            let error = worker_threads_for(Some(value), 2).unwrap_err();
            assert_eq!(error.value, value);
            let message = error.to_string();
            assert!(message.contains("TOKIO_WORKER_THREADS"), "{message}");
            assert!(message.contains("from 1 to 1024"), "{message}");
        }
    }

    /// Workers run below the process; the store's writer, started from the blocking pool,
    /// keeps the process's priority.
    #[test]
    fn workers_yield_to_the_store_writer() {
        let process = thread_nice(current_thread_id()).unwrap();
        let runtime = multi_thread("prio-test").worker_threads(2).build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (workers, writer) = runtime.block_on(async {
            let store = crate::store::Store::open(dir.path().join("gate.db"))
                .await
                .unwrap();
            // Every worker has parked by now (they start idle).
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let mut workers = Vec::new();
            for _ in 0..8 {
                let nice = tokio::spawn(async { thread_nice(current_thread_id()).unwrap() });
                workers.push(nice.await.unwrap());
            }
            // The writer ("agent-gate-store") and its sync thread, as the kernel names them.
            let writer = nice_of_threads_named("agent-gate-stor");
            store.close().await.unwrap();
            (workers, writer)
        });
        let lowered = (process + WORKER_NICE_INCREMENT).min(19);
        assert!(workers.iter().all(|&n| n == lowered), "{workers:?}");
        assert!(
            !writer.is_empty() && writer.iter().all(|&n| n == process),
            "{writer:?}"
        );
    }
}
