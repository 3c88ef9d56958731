//! The handler trait and the per-block chain (CoreDNS `plugin.Handler` and `NextOrFailure`).
//!
//! A handler returns its reply instead of writing it; `Err` means "nothing written" and the
//! server answers with [`HandlerError::rcode`], the one place that maps errors to rcodes.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;

use super::request::{Request, Response};

/// Why a handler produced no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The handler wanted to pass the query on, but it was last in the chain.
    #[error("plugin/{0}: no next plugin found")]
    NoNextPlugin(&'static str),
    /// The handler refuses the query (e.g. too many concurrent queries).
    #[error("{0}")]
    Refused(String),
    /// Anything else: answered SERVFAIL.
    #[error("{0}")]
    Internal(String),
    /// The query gets no reply at all (`acl … drop`).
    #[error("plugin/{0}: query dropped")]
    Dropped(&'static str),
}

impl HandlerError {
    /// The rcode the server answers with when a chain returns this error.
    pub fn rcode(&self) -> ResponseCode {
        match self {
            Self::Refused(_) => ResponseCode::Refused,
            // A dropped query has no rcode; an internal lookup that hits one fails.
            Self::NoNextPlugin(_) | Self::Internal(_) | Self::Dropped(_) => ResponseCode::ServFail,
        }
    }
}

/// A query handler in a server block's chain.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The directive name.
    fn name(&self) -> &'static str;

    /// Answers `req`, or passes it on with `next.run(req)`.
    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError>;

    /// Adds the metadata this plugin knows about `req` (CoreDNS's `metadata.Provider`). Called
    /// by the `metadata` plugin, for every handler after it, before the query goes on.
    fn metadata(&self, _req: &Request, _meta: &mut super::metadata::Meta) {}
}

/// The rest of the chain after the current handler. Owned (an `Arc` of the chain and a
/// position), so a handler can keep it for background work such as a cache refresh.
#[derive(Clone)]
pub struct Next<'a> {
    chain: Arc<[Arc<dyn Handler>]>,
    pos: usize,
    caller: &'static str,
    _life: std::marker::PhantomData<&'a ()>,
}

impl Next<'_> {
    /// Runs the next handler; at the end of the chain this is `NoNextPlugin`.
    pub async fn run(self, req: &Request) -> Result<Response, HandlerError> {
        match self.chain.get(self.pos).cloned() {
            Some(h) => {
                let next = Next {
                    chain: self.chain.clone(),
                    pos: self.pos + 1,
                    caller: h.name(),
                    _life: std::marker::PhantomData,
                };
                h.serve(req, next).await
            }
            None => Err(HandlerError::NoNextPlugin(self.caller)),
        }
    }

    /// The handlers that follow, in order.
    pub fn handlers(&self) -> &[Arc<dyn Handler>] {
        self.chain.get(self.pos..).unwrap_or(&[])
    }

    /// Whether any handler follows.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.chain.len()
    }

    /// The same position, detached from the current call (for work that outlives it).
    pub fn detach(&self) -> Next<'static> {
        Next {
            chain: self.chain.clone(),
            pos: self.pos,
            caller: self.caller,
            _life: std::marker::PhantomData,
        }
    }
}

/// A server block's handlers, compiled once, in ORDER.
#[derive(Clone, Default)]
pub struct Chain {
    handlers: Arc<[Arc<dyn Handler>]>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Chain {
    /// A chain of `handlers`, first to last.
    pub fn new(handlers: Vec<Arc<dyn Handler>>) -> Self {
        Self {
            handlers: handlers.into(),
        }
    }

    /// Runs the chain; an empty chain refuses (CoreDNS: a zone without plugins → REFUSED).
    pub async fn run(&self, req: &Request) -> Result<Response, HandlerError> {
        if self.handlers.is_empty() {
            return Err(HandlerError::Refused(
                "no plugins in this server block".into(),
            ));
        }
        Next {
            chain: self.handlers.clone(),
            pos: 0,
            caller: "",
            _life: std::marker::PhantomData,
        }
        .run(req)
        .await
    }

    /// Handler names in chain order.
    pub fn names(&self) -> Vec<&'static str> {
        self.handlers.iter().map(|h| h.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    struct Pass;
    #[async_trait::async_trait]
    impl Handler for Pass {
        fn name(&self) -> &'static str {
            "pass"
        }
        async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
            next.run(req).await
        }
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

    fn req() -> Request {
        Request::new(
            Name::from_ascii("a.example.").unwrap(),
            RecordType::A,
            "127.0.0.1:5353".parse().unwrap(),
            super::super::request::Proto::Udp,
        )
    }

    #[tokio::test]
    async fn runs_in_order_and_fails_at_the_end() {
        let chain = Chain::new(vec![Arc::new(Pass), Arc::new(Answer)]);
        assert_eq!(chain.run(&req()).await.unwrap().plugin, "answer");
        let chain = Chain::new(vec![Arc::new(Pass)]);
        let err = chain.run(&req()).await.unwrap_err();
        assert_eq!(err.to_string(), "plugin/pass: no next plugin found");
        assert_eq!(err.rcode(), ResponseCode::ServFail);
        assert_eq!(
            Chain::default().run(&req()).await.unwrap_err().rcode(),
            ResponseCode::Refused
        );
    }
}
