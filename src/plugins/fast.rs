//! The fast path: a plain query (see [`dnswire::Question`]) answered straight from the datagram
//! to the reply's bytes, without decoding it into a `Request` or building a `Message`.
//!
//! The server offers every plain query to the block's chain through [`Chain::run_fast`]: each
//! handler says what it would do with it ([`Handler::fast`]): `No` (it needs the general path;
//! the default), `Pass` (it would pass the query on, and change the reply on its way back in
//! [`Handler::fast_after`]) or `Answered` (it wrote the whole reply). Nothing may happen before
//! the answer is decided — a handler that passes does its part only in `fast_after`, after a
//! later one answered — so a `No` anywhere leaves no trace and the query takes the general path
//! as if the fast one did not exist. The replies are the general path's, byte for byte (the
//! tests compare them).
//!
//! [`Chain::run_fast`]: super::Chain::run_fast
//! [`Handler::fast`]: super::Handler::fast
//! [`Handler::fast_after`]: super::Handler::fast_after

use std::net::SocketAddr;

use hickory_proto::rr::{DNSClass, RecordType};
use tokio::time::Instant;

use super::Proto;
use crate::dnswire::{self, Question};

/// What a handler does with a plain query on the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastStep {
    /// It needs the general path.
    No,
    /// It passes the query on; [`super::Handler::fast_after`] sees the reply.
    Pass,
    /// It wrote the reply.
    Answered,
}

/// A plain query on the fast path, with what the server knows about it.
#[derive(Debug)]
pub struct FastQuery<'a> {
    /// The question.
    pub q: &'a Question<'a>,
    /// The name as sent, with its trailing dot.
    pub sent: &'a str,
    /// The name in lower case, with its trailing dot.
    pub lower: &'a str,
    /// Client address.
    pub src: SocketAddr,
    /// Local address of the listener.
    pub local: SocketAddr,
    /// Transport.
    pub proto: Proto,
    /// The zone of the block that took it (lower-case FQDN).
    pub zone: &'a str,
    /// The listener label, e.g. `dns://:53`.
    pub server: &'a std::sync::Arc<str>,
    /// When the server read it.
    pub start: Instant,
}

impl FastQuery<'_> {
    /// The query type.
    pub fn qtype(&self) -> RecordType {
        RecordType::from(self.q.qtype)
    }

    /// The query class (always IN on the fast path).
    pub fn qclass(&self) -> DNSClass {
        DNSClass::IN
    }

    /// The DO bit.
    pub fn do_bit(&self) -> bool {
        self.q.edns.is_some_and(|(_, d)| d)
    }

    /// The largest reply the client takes (as `Request::max_size`).
    pub fn max_size(&self) -> u16 {
        match (self.proto, self.q.edns) {
            (Proto::Tcp, _) => u16::MAX,
            (Proto::Udp, Some((size, _))) => size.max(512),
            (Proto::Udp, None) => 512,
        }
    }

    /// Starts a reply in `out`: the header (id, opcode, RD and CD from the query; QR, AA and
    /// `rcode` set; counts 0) and the question as sent.
    pub fn reply_head(&self, out: &mut dnswire::Writer<'_>, rcode: u8) -> Option<()> {
        let mut h = [0u8; dnswire::HEADER];
        h[..2].copy_from_slice(&self.q.id.to_be_bytes());
        h[5] = 1;
        let b = out.buf();
        b.clear();
        b.extend_from_slice(&h);
        dnswire::set_reply_header(
            b,
            self.q.id,
            0,
            self.q.recursion_desired,
            self.q.checking_disabled,
        );
        dnswire::Flags {
            authoritative: true,
            rcode,
            ..dnswire::Flags::default()
        }
        .write_answer_bits(b);
        out.question_name(self.q.name_wire(), self.sent)?;
        let b = out.buf();
        b.extend_from_slice(&self.q.qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        Some(())
    }

    /// Ends a reply: sets the section counts, appends our OPT record if the query had one;
    /// `None` if the reply would not fit the client's buffer (the general path fits it).
    pub fn reply_end(&self, out: &mut [u8], counts: [u16; 3]) -> Option<()> {
        for (i, c) in counts.into_iter().enumerate() {
            out.get_mut(6 + 2 * i..8 + 2 * i)?
                .copy_from_slice(&c.to_be_bytes());
        }
        let opt = if self.q.edns.is_some() { 11 } else { 0 };
        (out.len() + opt <= usize::from(self.max_size())).then_some(())
    }

    /// Appends our OPT record (the client's payload size, at least 512, and its DO bit) if the
    /// query had one; the reply is then complete.
    pub fn push_opt(&self, out: &mut Vec<u8>) {
        if let Some((size, dnssec_ok)) = self.q.edns {
            dnswire::push_opt(out, size.max(512), dnssec_ok);
        }
    }
}
