//! The values the store takes and returns: timestamps, request states, decisions, new requests,
//! transitions, stored records, audit entries and audit queries.

mod audit;
mod request;
mod state;
mod stats;
mod timestamp;
mod transition;

pub use audit::{AuditEntry, AuditKind, AuditQuery, AuditRecord};
pub use request::{
    EXECUTION_FAILED_CODE, InsertOutcome, NewRequest, RESTART_DURING_EXECUTION, RecoveryReport,
    RequestKey, RequestRecord, StoredError,
};
pub use state::{Decision, RequestState, UnknownName};
pub use stats::StoreStats;
pub use timestamp::Timestamp;
pub(crate) use timestamp::rfc3339;
pub use transition::Transition;
