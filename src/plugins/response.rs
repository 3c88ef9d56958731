//! What kind of reply a message is and how long it may be kept: CoreDNS's `response.Typify`
//! and `dnsutil.MinimalTTL`, shared by `cache` and the DoH listener's `Cache-Control`.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// What kind of reply it is (CoreDNS's `response.Typify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NOERROR with answers (or with neither SOA nor NS in authority).
    NoError,
    /// NOERROR without answers, SOA in authority.
    NoData,
    /// NXDOMAIN with SOA in authority.
    NameError,
    /// SERVFAIL or NOTIMP.
    ServerError,
    /// NOERROR without answers, NS in authority.
    Delegation,
    /// Anything else.
    Other,
}

/// Classifies a reply.
pub fn typify(m: &Message) -> Kind {
    let rcode = m.metadata.response_code;
    if !m.answers.is_empty() && rcode == ResponseCode::NoError {
        return Kind::NoError;
    }
    let soa = m
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA);
    let ns = m
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NS);
    match rcode {
        ResponseCode::NoError if soa => Kind::NoData,
        ResponseCode::NXDomain if soa => Kind::NameError,
        ResponseCode::ServFail | ResponseCode::NotImp => Kind::ServerError,
        ResponseCode::NoError if ns => Kind::Delegation,
        ResponseCode::NoError => Kind::NoError,
        _ => Kind::Other,
    }
}

/// CoreDNS's `dnsutil.MinimalTTL`: the smallest TTL in the reply, 5 s when there is none.
pub fn minimal_ttl(m: &Message, kind: Kind) -> Duration {
    const FAIL_SAFE: Duration = Duration::from_secs(5);
    if !matches!(kind, Kind::NoError | Kind::NameError | Kind::NoData) {
        return FAIL_SAFE;
    }
    m.answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .map(|r| r.ttl)
        .min()
        .map_or(FAIL_SAFE, |t| Duration::from_secs(u64::from(t.min(3600))))
}
