/// Bounds applied to untrusted archives.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    pub max_entries: u64,
    /// Sum of the unpacked sizes of all entries.
    pub max_unpacked_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self { max_entries: 100_000, max_unpacked_bytes: 2 << 30 }
    }
}
