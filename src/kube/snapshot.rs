//! The offline source: a YAML or JSON dump of objects (`kubectl get svc,endpointslices,
//! namespaces,pods -A -o yaml`: a `List`, or several documents), re-read when it changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::Value;
use tokio::sync::watch;

use super::metrics::KubeMetrics;
use super::model;
use super::store::{Change, Kind, Obj, Objects, Store};
use super::{KubeError, WatchSpec};

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(1);

fn flatten(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        Value::Object(ref m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List")) =>
        {
            if let Some(Value::Array(items)) = m.get("items") {
                items.iter().cloned().for_each(|i| flatten(i, out));
            }
        }
        Value::Null => {}
        other => out.push(other),
    }
}

fn labels(v: &Value) -> Option<std::collections::BTreeMap<String, String>> {
    serde_json::from_value(v.pointer("/metadata/labels")?.clone()).ok()
}

/// Reads `path` into the changes of one full list of every kind in `kinds`.
pub fn read(path: &Path, spec: &WatchSpec, kinds: &[Kind]) -> Result<Vec<Change>, KubeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KubeError::Snapshot(format!("{}: {e}", path.display())))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| KubeError::Snapshot(format!("{}: {e}", path.display())))?;
    let mut objects = Vec::new();
    for d in docs {
        flatten(d, &mut objects);
    }
    let mut changes: Vec<Change> = kinds.iter().map(|k| Change::Init(*k)).collect();
    let bad = |kind: &str, e: serde_json::Error| {
        KubeError::Snapshot(format!("{}: {kind}: {e}", path.display()))
    };
    for o in objects {
        let kind = o
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let selected = |sel: &Option<super::LabelSelector>| {
            sel.as_ref().is_none_or(|s| s.matches(labels(&o).as_ref()))
        };
        let obj = match kind.as_str() {
            "Service" if selected(&spec.labels) => {
                let s: core::Service = serde_json::from_value(o).map_err(|e| bad("Service", e))?;
                model::service(&s)
                    .map(|s| Obj::Service((s.namespace.clone(), s.name.clone()), Arc::new(s)))
            }
            "EndpointSlice" if spec.endpoints && selected(&spec.labels) => {
                let s: discovery::EndpointSlice =
                    serde_json::from_value(o).map_err(|e| bad("EndpointSlice", e))?;
                model::endpoint_slice(&s)
                    .map(|s| Obj::Slice((s.namespace.clone(), s.name.clone()), Arc::new(s)))
            }
            "Namespace" if selected(&spec.namespace_labels) => {
                let n: core::Namespace =
                    serde_json::from_value(o).map_err(|e| bad("Namespace", e))?;
                model::namespace(&n).map(|n| Obj::Namespace((Arc::from(""), n)))
            }
            "Pod" if spec.pods && selected(&spec.labels) => {
                let p: core::Pod = serde_json::from_value(o).map_err(|e| bad("Pod", e))?;
                model::pod(&p).map(|p| Obj::Pod((p.namespace.clone(), p.name.clone()), Arc::new(p)))
            }
            _ => None,
        };
        changes.extend(obj.map(Change::InitApply));
    }
    changes.extend(kinds.iter().map(|k| Change::InitDone(*k)));
    Ok(changes)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads `path` now (an error is fatal at start) and re-reads it whenever it changes (an
/// error then is logged and the last good view is kept).
pub fn spawn(
    path: PathBuf,
    spec: &WatchSpec,
    metrics: Arc<KubeMetrics>,
    tx: watch::Sender<Arc<Objects>>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), KubeError> {
    let kinds = spec.kinds();
    let mut store = Store::new(&kinds, Some(metrics));
    let mut seen = mtime(&path);
    for c in read(&path, spec, &kinds)? {
        store.apply(c);
    }
    let _ = tx.send(Arc::new(store.objects().clone()));
    let spec = spec.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let now = mtime(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match read(&path, &spec, &kinds) {
                Ok(changes) => {
                    let mut changed = false;
                    for c in changes {
                        changed |= store.apply(c);
                    }
                    if changed && tx.send(Arc::new(store.objects().clone())).is_err() {
                        return;
                    }
                    tracing::info!(target: "plugin/kubernetes", "reloaded snapshot {}", path.display());
                }
                Err(e) => {
                    tracing::error!(target: "plugin/kubernetes", "{e}; keeping the last good snapshot")
                }
            }
        }
    });
    Ok(())
}
