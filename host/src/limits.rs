//! What one plugin's store may hold: its linear memories and tables, its
//! core instances, and the entries of its resource table (sockets, files,
//! streams, pollables). A plugin that reaches a limit sees its `memory.grow`
//! or `table.grow` fail, as on a machine out of memory (Rust's allocator
//! then aborts the plugin: a trap); instantiating past the instance, table
//! or memory count fails; a host call that would add a resource past the
//! cap traps. Each ends the plugin with an error and leaves the host and
//! its other plugins as they were.

use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// Limits of one plugin's store (see the module's documentation). The
/// defaults are generous for a plugin (a CPython component runs in well
/// under them) and bounded for a host running many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    /// The most bytes one linear memory may grow to.
    pub max_memory: usize,
    /// The most elements one table may grow to.
    pub max_table_elements: usize,
    /// The most core instances (a component instantiates several).
    pub max_instances: usize,
    /// The most tables across the plugin's instances.
    pub max_tables: usize,
    /// The most linear memories across the plugin's instances.
    pub max_memories: usize,
    /// The most entries of the store's resource table at once (every
    /// socket, selector, pollable, stream and descriptor the plugin holds,
    /// wasmtime-wasi's included).
    pub max_resources: usize,
}

impl PluginLimits {
    /// 1 GiB per memory.
    pub const DEFAULT_MAX_MEMORY: usize = 1 << 30;
    /// 1,000,000 elements per table.
    pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 1_000_000;
    /// 1,000 core instances.
    pub const DEFAULT_MAX_INSTANCES: usize = 1_000;
    /// 1,000 tables.
    pub const DEFAULT_MAX_TABLES: usize = 1_000;
    /// 100 memories.
    pub const DEFAULT_MAX_MEMORIES: usize = 100;
    /// 100,000 resources.
    pub const DEFAULT_MAX_RESOURCES: usize = 100_000;

    /// wasmtime's limiter for a store with these limits.
    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.max_memory)
            .table_elements(self.max_table_elements)
            .instances(self.max_instances)
            .tables(self.max_tables)
            .memories(self.max_memories)
            .build()
    }
}

impl Default for PluginLimits {
    fn default() -> PluginLimits {
        PluginLimits {
            max_memory: Self::DEFAULT_MAX_MEMORY,
            max_table_elements: Self::DEFAULT_MAX_TABLE_ELEMENTS,
            max_instances: Self::DEFAULT_MAX_INSTANCES,
            max_tables: Self::DEFAULT_MAX_TABLES,
            max_memories: Self::DEFAULT_MAX_MEMORIES,
            max_resources: Self::DEFAULT_MAX_RESOURCES,
        }
    }
}
