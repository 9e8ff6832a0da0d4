//! P16 in the deployment manifests: every component is replicated with automatic
//! failover, and the databases and NATS accept connections only from Mindmesh's own
//! services. Reads `k8s/base` (and the production overlay's replica patch) as YAML.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every document of every YAML file under `k8s/base`.
fn base_documents() -> Vec<Yaml> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(repo().join("k8s/base")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml")
            && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            docs.extend(
                YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap(),
            );
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn name(doc: &Yaml) -> &str {
    doc["metadata"]["name"].as_str().unwrap()
}

#[test]
fn p16_every_component_is_replicated_with_failover() {
    let docs = base_documents();
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 5, "one Deployment per service");
    let budgets: Vec<&str> = of_kind(&docs, "PodDisruptionBudget")
        .into_iter()
        .map(name)
        .collect();
    for d in &deployments {
        assert!(
            d["spec"]["replicas"].as_i64().unwrap() >= 2,
            "{} has one replica",
            name(d)
        );
        assert!(
            budgets.contains(&name(d)),
            "{} has no PodDisruptionBudget",
            name(d)
        );
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        for probe in ["readinessProbe", "livenessProbe"] {
            assert!(
                !container[probe]["grpc"].is_badvalue(),
                "{} has no gRPC {probe}",
                name(d)
            );
        }
    }
    let nats = of_kind(&docs, "StatefulSet")
        .into_iter()
        .find(|s| name(s) == "nats")
        .expect("NATS StatefulSet");
    assert!(
        nats["spec"]["replicas"].as_i64().unwrap() >= 3,
        "JetStream needs 3 for replicated streams"
    );
    let clusters = of_kind(&docs, "Cluster");
    assert_eq!(clusters.len(), 2, "data and keystore PostgreSQL clusters");
    for c in clusters {
        assert!(
            c["spec"]["instances"].as_i64().unwrap() >= 3,
            "{} needs a standby to fail over to",
            name(c)
        );
    }
    // Production raises every Deployment to 3 replicas.
    let production =
        std::fs::read_to_string(repo().join("k8s/overlays/production/kustomization.yaml")).unwrap();
    assert!(
        production.contains("path: /spec/replicas, value: 3"),
        "production overlay sets 3 replicas"
    );
}

#[test]
fn p16_databases_and_nats_are_reachable_only_from_mindmesh_services() {
    let docs = base_documents();
    let policies = of_kind(&docs, "NetworkPolicy");
    let by_name = |n: &str| {
        *policies
            .iter()
            .find(|p| name(p) == n)
            .unwrap_or_else(|| panic!("NetworkPolicy {n} missing"))
    };

    // Nothing is reachable unless a policy allows it.
    let deny = by_name("default-deny-ingress");
    assert!(
        deny["spec"]["podSelector"]
            .as_hash()
            .is_some_and(|h| h.is_empty()),
        "applies to every pod"
    );
    assert!(deny["spec"]["ingress"].is_badvalue(), "allows nothing");

    for policy in ["postgres-from-mindmesh-only", "nats-from-mindmesh-only"] {
        let p = by_name(policy);
        let sources = p["spec"]["ingress"].as_vec().unwrap();
        for rule in sources {
            for from in rule["from"].as_vec().unwrap() {
                let labels = &from["podSelector"]["matchLabels"];
                let expressions = &from["podSelector"]["matchExpressions"];
                let namespace =
                    &from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"];
                let allowed = labels["app.kubernetes.io/part-of"].as_str() == Some("mindmesh")
                    // The database cluster's own instances (replication) and its operator.
                    || expressions.as_vec().is_some_and(|e| e[0]["key"].as_str() == Some("cnpg.io/cluster"))
                    || namespace.as_str() == Some("cnpg-system");
                assert!(
                    allowed,
                    "{policy} admits a source outside Mindmesh: {from:?}"
                );
            }
        }
    }
}
