//! The slog bridge: raft-rs logs through `slog`; [`RaftLog`] forwards its
//! records to `tracing` (target `custody::engine::store::raft`).

/// The `tracing` target of raft-rs's records.
const TARGET: &str = "custody::engine::store::raft";

/// Forwards raft-rs's `slog` records to `tracing` (target
/// `custody::engine::store::raft`), one level quieter than raft-rs uses:
/// its info (elections, configuration changes) is our debug.
pub(super) struct RaftLog;

impl slog::Drain for RaftLog {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        use slog::KV;
        // Formatting costs: skip records nobody will see.
        let enabled = match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::enabled!(target: TARGET, tracing::Level::ERROR),
            slog::Level::Warning => tracing::enabled!(target: TARGET, tracing::Level::WARN),
            slog::Level::Info => tracing::enabled!(target: TARGET, tracing::Level::DEBUG),
            slog::Level::Debug | slog::Level::Trace => tracing::enabled!(target: TARGET, tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut fields = KvText(String::new());
        let _ = values.serialize(record, &mut fields);
        let _ = record.kv().serialize(record, &mut fields);
        let message = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: TARGET, "{message}{}", fields.0),
            slog::Level::Warning => tracing::warn!(target: TARGET, "{message}{}", fields.0),
            slog::Level::Info => tracing::debug!(target: TARGET, "{message}{}", fields.0),
            slog::Level::Debug | slog::Level::Trace => tracing::trace!(target: TARGET, "{message}{}", fields.0),
        }
        Ok(())
    }
}

/// Collects slog key-values as ` key=value` text.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}
