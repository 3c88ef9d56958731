//! `nsid [DATA]`: adds the server's identifier (RFC 5001) to replies to clients that ask for
//! it (plugin/nsid).

use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};

use crate::corefile::{Dispenser, Error};
use crate::plugins::response::set_option;
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "nsid";

/// The host's name (`/proc/sys/kernel/hostname`, the pod's name in Kubernetes), else `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A parsed `nsid`: the identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsidConfig {
    /// DATA (the words joined by spaces), default the host's name.
    pub data: String,
}

/// Parses `nsid [DATA...]`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<NsidConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let data = if args.is_empty() {
        hostname()
    } else {
        args.join(" ")
    };
    // RFC 5001 puts no limit on it; an OPT option holds at most 65535 bytes.
    if data.len() > 512 {
        return Err(d.err(format!("nsid data is {} bytes, at most 512", data.len())));
    }
    d.expect_no_block()?;
    Ok(NsidConfig { data })
}

/// The handler.
pub struct Nsid {
    option: EdnsOption,
}

impl Nsid {
    /// A handler answering `cfg.data`.
    pub fn new(cfg: &NsidConfig) -> Self {
        let payload = NSIDPayload::new(cfg.data.as_bytes().to_vec()).expect("at most 512 bytes");
        Self {
            option: EdnsOption::NSID(payload),
        }
    }
}

#[async_trait::async_trait]
impl Handler for Nsid {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let asked = req
            .edns
            .as_ref()
            .is_some_and(|e| e.option(EdnsCode::NSID).is_some());
        let mut resp = next.run(req).await?;
        if asked {
            set_option(&mut resp.msg, self.option.clone());
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::op::Edns;
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    fn run(s: &str) -> Result<NsidConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn coredns_setup_table() {
        // CoreDNS's TestSetupNsid; `nsid\nnsid` is refused by the once-per-block check.
        assert_eq!(run("nsid").unwrap().data, hostname());
        assert_eq!(run("nsid \"ps0\"").unwrap().data, "ps0");
        assert_eq!(run("nsid \"worker1\"").unwrap().data, "worker1");
        assert_eq!(run("nsid \"tf 2\"").unwrap().data, "tf 2");
        assert_eq!(run("nsid Use The Force").unwrap().data, "Use The Force");
        assert!(run("nsid {\n x\n}").is_err());
        assert!(run(&format!("nsid {}", "x".repeat(513))).is_err());
    }

    struct Answer;

    #[async_trait::async_trait]
    impl Handler for Answer {
        fn name(&self) -> &'static str {
            "answer"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            Ok(Response::new(req.reply(), "answer"))
        }
    }

    #[tokio::test]
    async fn adds_nsid_only_when_asked() {
        // CoreDNS's TestNsid: a query with an empty NSID option gets "NSID" back.
        let chain = Chain::new(vec![
            Arc::new(Nsid::new(&NsidConfig {
                data: "NSID".into(),
            })),
            Arc::new(Answer),
        ]);
        let mut req = Request::new(
            Name::root(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        let r = chain.run(&req).await.unwrap();
        assert!(r.msg.edns.is_none(), "not asked");
        let mut e = Edns::new();
        e.options_mut()
            .insert(EdnsOption::NSID(NSIDPayload::new(vec![]).unwrap()));
        req.edns = Some(e);
        let r = chain.run(&req).await.unwrap();
        match r.msg.edns.unwrap().option(EdnsCode::NSID) {
            Some(EdnsOption::NSID(p)) => assert_eq!(p.as_ref(), b"NSID"),
            other => panic!("{other:?}"),
        }
    }
}
