//! The process allocator: mimalloc, set up for a small always-on service.
//!
//! The `agent-gate` binary (and the benchmarks, so that their numbers are its numbers) install
//! [`Allocator`] as the global allocator. A gateway call allocates and frees many small buffers
//! on several threads; under load glibc's malloc took about a sixth of the runtime threads' time,
//! and the same calls cost about a fifth less CPU with mimalloc.
//!
//! Two settings keep an idle gateway's memory near what it uses: mimalloc is compiled to commit
//! its arenas as they fill rather than all at once (`MI_DEFAULT_ARENA_EAGER_COMMIT=0`, set in
//! the workspace's `.cargo/config.toml`), and [`release_free_memory`] runs once start-up is done.

/// The global allocator of the `agent-gate` binary.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOCATOR: agent_gate_gateway::allocator::Allocator =
///     agent_gate_gateway::allocator::Allocator;
/// # fn main() {}
/// ```
pub use mimalloc::MiMalloc as Allocator;

/// Returns memory that is free but still held (such as what start-up used) to the operating
/// system. Cheap enough to call once after start-up; not meant for the hot path. Harmless when
/// mimalloc is not the global allocator.
pub fn release_free_memory() {
    // SAFETY: asks mimalloc to purge the free memory it holds; no pointer of ours is involved.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
