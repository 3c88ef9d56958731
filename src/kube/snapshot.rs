//! The offline source: a YAML or JSON dump of objects (`kubectl get svc,endpointslices,
//! namespaces,pods -A -o yaml`, plus `serviceimports` for `multicluster`: a `List`, or several
//! documents), re-read when it changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
        Value::Object(mut m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List")) =>
        {
            if let Some(Value::Array(items)) = m.remove("items") {
                items.into_iter().for_each(|i| flatten(i, out));
            }
        }
        Value::Null => {}
        other => out.push(other),
    }
}

/// A JSON `List` whose items stay unparsed until each is taken (a large dump is never held
/// as one tree).
#[derive(serde::Deserialize)]
struct RawList {
    kind: Option<String>,
    items: Option<Vec<Box<serde_json::value::RawValue>>>,
}

fn labels(v: &Value) -> Option<std::collections::BTreeMap<String, String>> {
    serde_json::from_value(v.pointer("/metadata/labels")?.clone()).ok()
}

/// Reads `path` into the changes of one full list of every kind in `kinds`.
pub fn read(path: &Path, spec: &WatchSpec, kinds: &[Kind]) -> Result<Vec<Change>, KubeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KubeError::Snapshot(format!("{}: {e}", path.display())))?;
    // JSON (what `kubectl get -o json` writes) takes the fast path; YAML is parsed as YAML.
    let mut raw_items = Vec::new();
    let mut objects = Vec::new();
    match serde_json::from_str::<RawList>(&text) {
        Ok(RawList {
            kind: Some(k),
            items: Some(items),
        }) if k.ends_with("List") => raw_items = items,
        _ => {
            // One JSON object, or YAML (one or more documents).
            let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
                Ok(v) => vec![v],
                Err(_) => serde_saphyr::from_multiple(&text)
                    .map_err(|e| KubeError::Snapshot(format!("{}: {e}", path.display())))?,
            };
            for d in docs {
                flatten(d, &mut objects);
            }
        }
    }
    drop(text);
    let mut changes: Vec<Change> = kinds.iter().map(|k| Change::Init(*k)).collect();
    let bad = |kind: &str, e: serde_json::Error| {
        KubeError::Snapshot(format!("{}: {kind}: {e}", path.display()))
    };
    let parsed = raw_items.into_iter().map(|r| {
        serde_json::from_str::<Value>(r.get())
            .map_err(|e| KubeError::Snapshot(format!("{}: {e}", path.display())))
    });
    for o in objects.into_iter().map(Ok).chain(parsed) {
        let o = o?;
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
            "EndpointSlice" if (spec.endpoints || spec.multicluster) && selected(&spec.labels) => {
                let s: discovery::EndpointSlice =
                    serde_json::from_value(o).map_err(|e| bad("EndpointSlice", e))?;
                // A slice may carry both service labels: it is then in both maps, as the
                // two watches of the API source each see it.
                if spec.multicluster {
                    changes.extend(model::mc_endpoint_slice(&s, spec.slice_opts()).map(|s| {
                        Change::InitApply(Obj::McSlice(
                            (s.namespace.clone(), s.name.clone()),
                            Arc::new(s),
                        ))
                    }));
                }
                model::endpoint_slice(&s, spec.slice_opts())
                    .filter(|_| spec.endpoints)
                    .map(|s| Obj::Slice((s.namespace.clone(), s.name.clone()), Arc::new(s)))
            }
            "ServiceImport" if spec.multicluster && selected(&spec.labels) => {
                let i: kube::api::DynamicObject =
                    serde_json::from_value(o).map_err(|e| bad("ServiceImport", e))?;
                model::service_import(&i)
                    .map(|s| Obj::Import((s.namespace.clone(), s.name.clone()), Arc::new(s)))
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

/// [`read`] on a blocking thread (a large file takes a while to parse).
async fn read_blocking(
    path: &Path,
    spec: &WatchSpec,
    kinds: &[Kind],
) -> Result<Vec<Change>, KubeError> {
    let (path, spec, kinds) = (path.to_path_buf(), spec.clone(), kinds.to_vec());
    tokio::task::spawn_blocking(move || read(&path, &spec, &kinds))
        .await
        .map_err(|e| KubeError::Snapshot(e.to_string()))?
}

/// Loads `path` now (an error is fatal at start) and re-reads it whenever it changes (an
/// error then is logged and the last good view is kept).
pub async fn spawn(
    path: PathBuf,
    spec: &WatchSpec,
    metrics: Arc<KubeMetrics>,
    tx: watch::Sender<Arc<Objects>>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), KubeError> {
    let kinds = spec.kinds();
    let mut store = Store::new(&kinds, Some(metrics));
    let mut watch = crate::fswatch::FileWatch::new(
        vec![path.clone()],
        crate::fswatch::mtimes(std::slice::from_ref(&path)),
        POLL,
    );
    for c in read_blocking(&path, spec, &kinds).await? {
        store.apply(c);
    }
    let _ = tx.send(Arc::new(store.objects().clone()));
    let spec = spec.clone();
    tokio::spawn(async move {
        while watch.changed(&stop).await {
            match read_blocking(&path, &spec, &kinds).await {
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
