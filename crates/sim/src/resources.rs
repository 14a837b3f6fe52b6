//! The resource registry: which kinds the API serves, under which group, versions and plural,
//! whether they have a status subresource, and (when CRD files were loaded) their schemas.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One served resource type.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    /// Kind.
    pub kind: String,
    /// Plural resource name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// kubectl categories.
    pub categories: Vec<String>,
    /// Has a `status` subresource (status only changes through it; the main endpoint ignores it).
    pub status_subresource: bool,
    /// `openAPIV3Schema` per version, when loaded from a CRD.
    pub schemas: BTreeMap<String, Value>,
    /// `additionalPrinterColumns` per version.
    pub columns: BTreeMap<String, Vec<Value>>,
}

impl ResourceType {
    /// The store key prefix: `group/plural`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `group/version` (or `v1` for core).
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The preferred (first) version.
    pub fn preferred(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// `plural.group` as Kubernetes names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Errors loading CRD files.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error(
        "`{path}` is not valid YAML: {message}; hint: --crds expects CustomResourceDefinition files"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A CRD misses a required field.
    #[error(
        "`{path}`: CustomResourceDefinition without `{field}`; hint: --crds expects complete CustomResourceDefinition files"
    )]
    Incomplete {
        /// The file.
        path: PathBuf,
        /// The missing field.
        field: &'static str,
    },
}

/// All served resource types.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// The types, in registration order.
    pub types: Vec<ResourceType>,
}

#[allow(clippy::too_many_arguments)]
fn rt(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    categories: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        versions: vec![version.into()],
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
        schemas: BTreeMap::new(),
        columns: BTreeMap::new(),
    }
}

fn core() -> Vec<ResourceType> {
    vec![
        rt(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            &[],
            true,
        ),
        rt("", "v1", "Secret", "secrets", true, &[], &[], false),
        rt(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            &[],
            false,
        ),
        rt(
            "",
            "v1",
            "Service",
            "services",
            true,
            &["svc"],
            &["all"],
            true,
        ),
        rt("", "v1", "Node", "nodes", false, &["no"], &[], true),
        rt("", "v1", "Event", "events", true, &["ev"], &[], false),
        rt(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            &[],
            false,
        ),
        // Served (empty unless a client writes them) so `kubectl describe node|namespace` works.
        rt("", "v1", "Pod", "pods", true, &["po"], &["all"], true),
        rt(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["quota"],
            &[],
            true,
        ),
        rt(
            "",
            "v1",
            "LimitRange",
            "limitranges",
            true,
            &["limits"],
            &[],
            false,
        ),
    ]
}

impl Registry {
    /// What the management cluster serves without `--crds`: core kinds and the Cluster API,
    /// CAPG, CAPA, Talos and CAAPH kinds meshfleet renders.
    pub fn management() -> Self {
        let capi = "cluster.x-k8s.io";
        let infra = "infrastructure.cluster.x-k8s.io";
        let cp = "controlplane.cluster.x-k8s.io";
        let boot = "bootstrap.cluster.x-k8s.io";
        let addons = "addons.cluster.x-k8s.io";
        let c = &["cluster-api"];
        let mut types = core();
        // The simulator's own failure-rehearsal kind (`meshfleet sim fail`, [`crate::outage`]).
        types.push(rt(
            crate::outage::GROUP,
            crate::outage::VERSION,
            crate::outage::KIND,
            "outages",
            false,
            &[],
            &[],
            false,
        ));
        types.extend([
            rt(
                capi,
                "v1beta2",
                "Cluster",
                "clusters",
                true,
                &["cl"],
                c,
                true,
            ),
            rt(
                capi,
                "v1beta2",
                "MachineDeployment",
                "machinedeployments",
                true,
                &["md"],
                c,
                true,
            ),
            rt(
                capi,
                "v1beta2",
                "MachineHealthCheck",
                "machinehealthchecks",
                true,
                &["mhc"],
                c,
                true,
            ),
            rt(
                capi,
                "v1beta2",
                "Machine",
                "machines",
                true,
                &["ma"],
                c,
                true,
            ),
            rt(
                infra,
                "v1beta1",
                "GCPCluster",
                "gcpclusters",
                true,
                &[],
                c,
                true,
            ),
            rt(
                infra,
                "v1beta1",
                "GCPMachineTemplate",
                "gcpmachinetemplates",
                true,
                &[],
                c,
                false,
            ),
            rt(
                infra,
                "v1beta2",
                "AWSCluster",
                "awsclusters",
                true,
                &[],
                c,
                true,
            ),
            rt(
                infra,
                "v1beta2",
                "AWSMachineTemplate",
                "awsmachinetemplates",
                true,
                &[],
                c,
                false,
            ),
            rt(
                cp,
                "v1alpha3",
                "TalosControlPlane",
                "taloscontrolplanes",
                true,
                &["tcp"],
                c,
                true,
            ),
            rt(
                boot,
                "v1alpha3",
                "TalosConfigTemplate",
                "talosconfigtemplates",
                true,
                &[],
                c,
                false,
            ),
            rt(
                boot,
                "v1alpha3",
                "TalosConfig",
                "talosconfigs",
                true,
                &[],
                c,
                true,
            ),
            rt(
                addons,
                "v1alpha1",
                "HelmChartProxy",
                "helmchartproxies",
                true,
                &["hcp"],
                c,
                true,
            ),
            rt(
                addons,
                "v1alpha1",
                "HelmReleaseProxy",
                "helmreleaseproxies",
                true,
                &["hrp"],
                c,
                true,
            ),
            // clusterctl's provider inventory: one entry per provider `clusterctl init`
            // installed (kubernetes-sigs/cluster-api:`cmd/clusterctl/api/v1alpha3/provider_type.go`@v1.14.0;
            // no status subresource).
            rt(
                "clusterctl.cluster.x-k8s.io",
                "v1alpha3",
                "Provider",
                "providers",
                true,
                &[],
                &[],
                false,
            ),
        ]);
        let col = |name: &str, path: &str| serde_json::json!({"name": name, "type": "string", "jsonPath": path});
        let avail = |t: &str| format!(".status.conditions[?(@.type==\"{t}\")].status");
        let defaults: [(&str, Vec<Value>); 6] = [
            (
                "Cluster",
                vec![
                    col("Phase", ".status.phase"),
                    col("Available", &avail("Available")),
                    col(
                        "Initialized",
                        ".status.initialization.controlPlaneInitialized",
                    ),
                ],
            ),
            (
                "Machine",
                vec![
                    col("Cluster", ".spec.clusterName"),
                    col("Node", ".status.nodeRef.name"),
                    col("Phase", ".status.phase"),
                    col("Version", ".spec.version"),
                ],
            ),
            (
                "MachineDeployment",
                vec![
                    col("Cluster", ".spec.clusterName"),
                    col("Replicas", ".status.replicas"),
                    col("Ready", ".status.readyReplicas"),
                    col("Phase", ".status.phase"),
                ],
            ),
            (
                "TalosControlPlane",
                vec![
                    col("Ready", ".status.ready"),
                    col("Initialized", ".status.initialized"),
                    col("Replicas", ".status.replicas"),
                    col("Ready Replicas", ".status.readyReplicas"),
                ],
            ),
            (
                "GCPCluster",
                vec![
                    col("Ready", ".status.ready"),
                    col("Network", ".spec.network.name"),
                    col("Endpoint", ".spec.controlPlaneEndpoint.host"),
                ],
            ),
            (
                "AWSCluster",
                vec![
                    col("Ready", ".status.ready"),
                    col("VPC", ".spec.network.vpc.cidrBlock"),
                    col("Endpoint", ".spec.controlPlaneEndpoint.host"),
                ],
            ),
        ];
        for (kind, cols) in defaults {
            if let Some(t) = types
                .iter_mut()
                .find(|t| t.kind == kind && !t.group.is_empty())
            {
                t.columns.insert(t.preferred().to_string(), cols);
            }
        }
        Self { types }
    }

    /// What a simulated workload cluster serves: core kinds, EndpointSlices, and the MCS-API
    /// kinds Cilium's chart installs with `clustermesh.mcsapi` ([`crate::workloads`]).
    pub fn workload() -> Self {
        let mut types = core();
        types.extend([
            rt(
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
                true,
                &[],
                &[],
                false,
            ),
            rt(
                "multicluster.x-k8s.io",
                "v1alpha1",
                "ServiceExport",
                "serviceexports",
                true,
                &["svcex"],
                &[],
                true,
            ),
            rt(
                "multicluster.x-k8s.io",
                "v1alpha1",
                "ServiceImport",
                "serviceimports",
                true,
                &["svcim"],
                &[],
                true,
            ),
        ]);
        Self { types }
    }

    /// Find a type by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| {
            t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version)
        })
    }

    /// Find a type by group and kind (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// Groups with their versions, in registration order (core excluded).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            let entry = match out.iter_mut().position(|(g, _)| *g == t.group) {
                Some(i) => &mut out[i],
                None => {
                    out.push((t.group.clone(), Vec::new()));
                    let n = out.len() - 1;
                    &mut out[n]
                }
            };
            for v in &t.versions {
                if !entry.1.contains(v) {
                    entry.1.push(v.clone());
                }
            }
        }
        // Preferred version: the highest stability (v1 > v1beta2 > v1beta1 > v1alpha3 …).
        for (_, vs) in &mut out {
            vs.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
        }
        out
    }

    /// Load every CustomResourceDefinition under `dir` (recursively, `.yaml`/`.yml`/`.json`),
    /// adding served versions and schemas to the known types. Returns how many CRDs were read.
    pub fn load_crds(&mut self, dir: &Path) -> Result<usize, CrdError> {
        let mut files = Vec::new();
        collect(dir, &mut files).map_err(|source| CrdError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        files.sort();
        let mut n = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|source| CrdError::Read {
                path: f.clone(),
                source,
            })?;
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(&text).map_err(|e| CrdError::Parse {
                    path: f.clone(),
                    message: e.to_string(),
                })?;
            for d in docs {
                if d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                    self.add_crd(&f, &d)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn add_crd(&mut self, path: &Path, d: &Value) -> Result<(), CrdError> {
        let s = |p: &str, field: &'static str| {
            d.pointer(p)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(CrdError::Incomplete {
                    path: path.to_path_buf(),
                    field,
                })
        };
        let group = s("/spec/group", "spec.group")?;
        let kind = s("/spec/names/kind", "spec.names.kind")?;
        let plural = s("/spec/names/plural", "spec.names.plural")?;
        let singular = s("/spec/names/singular", "spec.names.singular")
            .unwrap_or_else(|_| kind.to_lowercase());
        let strs = |p: &str| -> Vec<String> {
            d.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let namespaced = d.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
        let mut versions = Vec::new();
        let mut schemas = BTreeMap::new();
        let mut status = false;
        let mut columns = BTreeMap::new();
        for v in d
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let Some(name) = v.get("name").and_then(Value::as_str) else {
                continue;
            };
            versions.push(name.to_string());
            if let Some(sc) = v.pointer("/schema/openAPIV3Schema") {
                schemas.insert(name.to_string(), sc.clone());
            }
            if let Some(c) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
                columns.insert(name.to_string(), c.clone());
            }
            if v.pointer("/subresources/status").is_some() {
                status = true;
            }
        }
        versions.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
        let new = ResourceType {
            group,
            versions,
            kind,
            plural,
            singular,
            namespaced,
            short_names: strs("/spec/names/shortNames"),
            categories: strs("/spec/names/categories"),
            status_subresource: status,
            schemas,
            columns,
        };
        match self
            .types
            .iter_mut()
            .find(|t| t.group == new.group && t.plural == new.plural)
        {
            Some(t) => {
                for v in &new.versions {
                    if !t.versions.contains(v) {
                        t.versions.push(v.clone());
                    }
                }
                t.versions
                    .sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
                for (v, sc) in new.schemas {
                    t.schemas.entry(v).or_insert(sc);
                }
                for (v, c) in new.columns {
                    t.columns.insert(v, c);
                }
                t.status_subresource |= new.status_subresource;
                if t.short_names.is_empty() {
                    t.short_names = new.short_names;
                }
                if t.categories.is_empty() {
                    t.categories = new.categories;
                }
            }
            None => self.types.push(new),
        }
        Ok(())
    }
}

/// Kubernetes version priority: GA > beta > alpha, then by numbers.
pub fn version_rank(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stab, num) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stab, major, num)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
        {
            out.push(p);
        }
    }
    Ok(())
}
