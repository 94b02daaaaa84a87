//! The JSON bodies of the REST API's job routes (`GET /jobs`,
//! `GET /jobs/{id}`), modelled on Flink's: a job's id, name, state and
//! uptime, and its graph — vertices with uid, kind and parallelism, edges
//! with their partitioning.

use serde::Serialize;

use crate::plan::{JobPlan, Partitioning, VertexKind};

/// One vertex of the job graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct VertexView {
    /// The vertex's uid.
    pub uid: String,
    /// `source`, `operator` or `sink`.
    pub kind: &'static str,
    /// Its number of parallel subtasks.
    pub parallelism: u32,
}

/// One edge of the job graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct EdgeView {
    /// The upstream vertex's uid.
    pub from: String,
    /// The downstream vertex's uid.
    pub to: String,
    /// `forward`, `rebalance`, `broadcast` or `key-by` (Flink's `HASH`).
    pub partitioning: &'static str,
    /// The upstream's side output the edge carries, if not its main output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_output: Option<String>,
}

/// The graph of a job, as `GET /jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GraphView {
    /// The vertices, every one after its inputs.
    pub vertices: Vec<VertexView>,
    /// The edges, in the order of the vertices they lead to.
    pub edges: Vec<EdgeView>,
}

/// A job, as `GET /jobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct JobOverview {
    /// The job id (16 hex digits).
    pub id: String,
    /// The job's name.
    pub name: String,
    /// `RUNNING` while the endpoint serves (it goes away with the job).
    pub state: &'static str,
    /// When the job started (wall clock, ms since the epoch).
    pub start_time_ms: i64,
    /// How long it has run, in ms.
    pub uptime_ms: i64,
}

/// The body of every error answer: what was wrong, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorBody {
    /// The message.
    pub error: String,
}

/// The name of a vertex's kind.
pub(crate) fn kind_name(kind: &VertexKind) -> &'static str {
    match kind {
        VertexKind::Source(_) => "source",
        VertexKind::Operator(_) => "operator",
        VertexKind::Sink(_) => "sink",
    }
}

impl GraphView {
    /// The graph of `plan`.
    pub(crate) fn of(plan: &JobPlan) -> Self {
        let vertices = plan
            .vertices
            .iter()
            .map(|v| VertexView {
                uid: v.uid.clone(),
                kind: kind_name(&v.kind),
                parallelism: v.parallelism,
            })
            .collect();
        let uid = |index: usize| plan.vertices.get(index).map_or_else(String::new, |v| v.uid.clone());
        let edges = plan
            .vertices
            .iter()
            .flat_map(|v| {
                v.inputs().map(|(_, edge)| EdgeView {
                    from: uid(edge.from),
                    to: v.uid.clone(),
                    partitioning: match edge.partitioning {
                        Partitioning::Forward => "forward",
                        Partitioning::Rebalance => "rebalance",
                        Partitioning::Broadcast => "broadcast",
                        Partitioning::KeyBy(_) => "key-by",
                    },
                    side_output: edge.side_output.clone(),
                })
            })
            .collect();
        Self { vertices, edges }
    }
}
