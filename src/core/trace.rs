//! The spans of one trace -> one request record.
//!
//! Spans arrive in any order and in any number of exports; `merge_spans` keeps one summary per
//! span id (a re-sent span replaces itself), and `assemble` is a pure function of that set, so
//! every arrival order converges to the same record. No I/O.

use std::collections::{BTreeMap, HashMap};

use super::pricing::PriceTable;
use super::record::{MAX_MAP_ENTRIES, MAX_TOKENS, Record, Status, Usage, char_count};
use super::rollup::{PricedRecord, usd_to_nanos};
use super::span::{Evaluation, SpanSummary, hex};

/// Model name of a generation span that reports tokens but names no model (never priced).
pub const UNKNOWN_MODEL: &str = "unknown";
/// Stage that collects the smallest stages of a trace with more distinct stages than a
/// record holds.
pub const OTHER_STAGE: &str = "other";

/// Adds `incoming` spans to a trace's stored spans: a span id already present is replaced by
/// its newer copy. Keeps the set sorted by (start, span id). Returns whether anything changed.
pub fn merge_spans(spans: &mut Vec<SpanSummary>, incoming: Vec<SpanSummary>) -> bool {
    // By span id: an agent trace may hold thousands of spans, merged a batch at a time.
    let mut index: HashMap<u64, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut changed = false;
    for span in incoming {
        match index.get(&span.span_id) {
            Some(&i) if spans[i] == span => {}
            Some(&i) => {
                spans[i] = span;
                changed = true;
            }
            None => {
                index.insert(span.span_id, spans.len());
                spans.push(span);
                changed = true;
            }
        }
    }
    spans.sort_by_key(|s| (s.start_ns, s.span_id));
    changed
}

/// What a trace amounts to so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembly {
    /// Not complete yet: the root span has not arrived (or no model call has, while the grace
    /// period runs).
    Pending,
    /// No span of the trace is a model call: not an LLM request, nothing to record.
    NotLlm,
    Record {
        priced: Box<PricedRecord>,
        evaluations: Vec<Evaluation>,
    },
}

/// Builds the record of a trace from its spans (sorted as `merge_spans` leaves them).
/// `force` is set once the grace period is over: a trace without a root span then becomes a
/// record anyway, spanning its earliest start to its latest end.
pub fn assemble(
    trace_id: &[u8; 16],
    spans: &[SpanSummary],
    force: bool,
    prices: &PriceTable,
) -> Assembly {
    if spans.is_empty() {
        return Assembly::Pending;
    }
    // The root: the span without parent (the longest, if several claim it).
    let root = spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.parent_id.is_none())
        .max_by_key(|(i, s)| (s.end_ns - s.start_ns, std::cmp::Reverse(*i)))
        .map(|(i, _)| i);
    if root.is_none() && !force {
        return Assembly::Pending;
    }
    let tree = Tree::new(spans, root);
    let counted = tree.counted_generations();
    if counted.is_empty() {
        return if force {
            Assembly::NotLlm
        } else {
            Assembly::Pending
        };
    }
    let (start_ns, end_ns) = match root {
        Some(r) => (spans[r].start_ns, spans[r].end_ns),
        None => (
            spans.iter().map(|s| s.start_ns).min().unwrap_or(0),
            spans.iter().map(|s| s.end_ns).max().unwrap_or(0),
        ),
    };

    // Tokens and cost: each generation priced by its own model at its own time.
    let mut usage = Usage::default();
    let mut cost_nanos = Some(0i64);
    let mut primary: Option<(usize, i64, u64)> = None; // (index, cost, tokens)
    let mut models: Vec<&str> = Vec::new();
    for &i in &counted {
        let g = spans[i]
            .generation
            .as_ref()
            .expect("counted spans are generations");
        let u = Usage {
            input_tokens: g.usage.input_tokens,
            output_tokens: g.usage.output_tokens,
            cached_input_tokens: g.usage.cached_input_tokens,
            cache_write_tokens: g.usage.cache_write_tokens,
            reasoning_tokens: g.usage.reasoning_tokens,
        };
        usage.input_tokens = (usage.input_tokens + u.input_tokens).min(MAX_TOKENS);
        usage.output_tokens = (usage.output_tokens + u.output_tokens).min(MAX_TOKENS);
        usage.cached_input_tokens =
            (usage.cached_input_tokens + u.cached_input_tokens).min(usage.input_tokens);
        usage.cache_write_tokens = (usage.cache_write_tokens + u.cache_write_tokens)
            .min(usage.input_tokens - usage.cached_input_tokens);
        usage.reasoning_tokens =
            (usage.reasoning_tokens + u.reasoning_tokens).min(usage.output_tokens);
        let model = g.model.as_deref().unwrap_or(UNKNOWN_MODEL);
        if !models.contains(&model) {
            models.push(model);
        }
        let ts_ms = (spans[i].start_ns / 1_000_000) as i64;
        // As for events: an unknown model is unpriced even when it billed no tokens.
        let cost = prices.cost(model, ts_ms, &u).map(usd_to_nanos);
        cost_nanos = cost_nanos.zip(cost).map(|(a, b)| a + b);
        let rank = (cost.unwrap_or(-1), u.total());
        if primary.is_none_or(|(_, c, t)| rank > (c, t)) {
            primary = Some((i, rank.0, rank.1));
        }
    }
    let primary = primary.map(|(i, _, _)| i).unwrap_or(counted[0]);
    let primary_gen = spans[primary].generation.as_ref().expect("a generation");
    let model = primary_gen
        .model
        .clone()
        .or_else(|| {
            counted
                .iter()
                .find_map(|&i| spans[i].generation.as_ref()?.model.clone())
        })
        .unwrap_or_else(|| UNKNOWN_MODEL.to_owned());

    // Labels: the root's first, then the other spans in time order.
    let ordered: Vec<&SpanSummary> = root
        .map(|r| &spans[r])
        .into_iter()
        .chain(
            spans
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != root)
                .map(|(_, s)| s),
        )
        .collect();
    let first = |f: &dyn Fn(&SpanSummary) -> Option<&String>| -> Option<String> {
        ordered.iter().find_map(|s| f(s)).cloned()
    };
    let request_id = first(&|s| s.request_id.as_ref()).unwrap_or_else(|| hex(trace_id));
    let feature = first(&|s| s.feature.as_ref())
        .or_else(|| first(&|s| s.feature_fallback.as_ref()))
        .or_else(|| first(&|s| s.service_name.as_ref()));
    let release = first(&|s| s.release.as_ref()).or_else(|| first(&|s| s.service_version.as_ref()));

    // Status: the root's when it failed; otherwise the outcome of the last model call.
    let last_gen = *counted
        .iter()
        .max_by_key(|&&i| (spans[i].end_ns, i))
        .expect("non-empty");
    let (status, error_type) = match root {
        Some(r) if spans[r].error => (
            Status::Error,
            spans[r]
                .error_type
                .clone()
                .or_else(|| spans[last_gen].error_type.clone()),
        ),
        _ if spans[last_gen].error => (Status::Error, spans[last_gen].error_type.clone()),
        _ => (Status::Ok, None),
    };

    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for s in &ordered {
        for (k, v) in &s.attributes {
            if attributes.len() < MAX_MAP_ENTRIES && !attributes.contains_key(k) {
                attributes.insert(k.clone(), v.clone());
            }
        }
    }
    let mut put = |k: &str, v: String| {
        if attributes.len() < MAX_MAP_ENTRIES && !v.is_empty() {
            attributes.entry(k.to_owned()).or_insert(v);
        }
    };
    if let Some(op) = &primary_gen.operation {
        put("operation", op.clone());
    }
    let last = spans[last_gen].generation.as_ref().expect("a generation");
    put("finish_reason", last.finish_reasons.join(","));
    if models.len() > 1 {
        put("models", models.join(","));
    }
    if counted.len() > 1 {
        put("generations", counted.len().to_string());
    }

    let ttft_ms = counted
        .iter()
        .find_map(|&i| spans[i].generation.as_ref()?.ttft_ms);
    let input = counted
        .iter()
        .find_map(|&i| spans[i].generation.as_ref()?.input.clone());
    let output = counted
        .iter()
        .rev()
        .find_map(|&i| spans[i].generation.as_ref()?.output.clone());

    let record = Record {
        request_id,
        timestamp_ms: (start_ns / 1_000_000) as i64,
        model,
        provider: primary_gen.provider.clone(),
        usage,
        user_id: first(&|s| s.user_id.as_ref()),
        feature,
        session_id: first(&|s| s.session_id.as_ref()),
        release,
        status,
        error_type,
        stages: tree.stages(start_ns, end_ns),
        duration_ms: (end_ns - start_ns) as f64 / 1e6,
        ttft_ms,
        attributes,
        input_chars: input.as_deref().map(char_count),
        output_chars: output.as_deref().map(char_count),
        scores: Vec::new(),
        input,
        output,
    };
    let evaluations = spans
        .iter()
        .flat_map(|s| s.evaluations.iter().cloned())
        .collect();
    Assembly::Record {
        priced: Box::new(PricedRecord { record, cost_nanos }),
        evaluations,
    }
}

/// Parent links of a trace's spans.
struct Tree<'a> {
    spans: &'a [SpanSummary],
    root: Option<usize>,
    /// Index of each span's parent within the trace (`None`: the root, or a parent that has
    /// not arrived: such spans hang under the root).
    parent: Vec<Option<usize>>,
}

impl<'a> Tree<'a> {
    fn new(spans: &'a [SpanSummary], root: Option<usize>) -> Self {
        let index: HashMap<u64, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let parent = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if Some(i) == root {
                    return None;
                }
                s.parent_id
                    .and_then(|p| index.get(&p).copied())
                    .filter(|&p| p != i)
            })
            .collect();
        Tree {
            spans,
            root,
            parent,
        }
    }

    /// Ancestors of a span, nearest first, bounded so a malformed cycle cannot loop.
    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let mut cur = self.parent[i];
        let mut steps = 0;
        std::iter::from_fn(move || {
            let p = cur?;
            steps += 1;
            if steps > self.spans.len() {
                return None;
            }
            cur = self.parent[p];
            Some(p)
        })
    }

    /// Generation spans whose tokens count: the innermost ones. A wrapper span reporting the
    /// same call (a framework span around the SDK's span) is not counted twice.
    fn counted_generations(&self) -> Vec<usize> {
        let mut has_gen_descendant = vec![false; self.spans.len()];
        for (i, s) in self.spans.iter().enumerate() {
            if s.generation.is_some() {
                for a in self.ancestors(i) {
                    has_gen_descendant[a] = true;
                }
            }
        }
        (0..self.spans.len())
            .filter(|&i| self.spans[i].generation.is_some() && !has_gen_descendant[i])
            .collect()
    }

    /// The stage a span's time goes to. A span no rule recognised is its own stage (its name),
    /// unless it is nested in a recognised one (an HTTP span inside a model call is model
    /// inference). The root is a stage only when it is itself a model call.
    fn stage_of(&self, i: usize) -> Option<&'a str> {
        let s = &self.spans[i];
        if Some(i) == self.root && s.generation.is_none() {
            return None;
        }
        if let Some(stage) = &s.stage {
            return Some(stage);
        }
        for a in self.ancestors(i) {
            if Some(a) == self.root && self.spans[a].generation.is_none() {
                break;
            }
            if let Some(stage) = &self.spans[a].stage {
                return Some(stage);
            }
        }
        Some(&s.name)
    }

    /// Milliseconds per stage within [start, end). At each instant the time goes to the
    /// deepest spans running then (a parent's time is only what its children leave), and a
    /// stage's time is the union of its intervals: parallel spans of one stage count once.
    fn stages(&self, start_ns: u64, end_ns: u64) -> BTreeMap<String, f64> {
        let mut names: Vec<&str> = Vec::new();
        let mut events: Vec<(u64, bool, usize, usize)> = Vec::new(); // (time, is_start, depth, stage)
        for i in 0..self.spans.len() {
            let Some(stage) = self.stage_of(i) else {
                continue;
            };
            let idx = match names.iter().position(|n| *n == stage) {
                Some(k) => k,
                None => {
                    names.push(stage);
                    names.len() - 1
                }
            };
            let s = &self.spans[i];
            let (a, b) = (s.start_ns.max(start_ns), s.end_ns.min(end_ns));
            // Spans whose parent has not arrived hang under the root.
            let chain: Vec<usize> = self.ancestors(i).collect();
            let depth = chain.len()
                + usize::from(Some(i) != self.root && chain.last().copied() != self.root);
            if a < b {
                events.push((a, true, depth, idx));
                events.push((b, false, depth, idx));
            }
        }
        let mut ns = vec![0u64; names.len()];
        // Ends before starts at the same instant; then by time.
        events.sort_by_key(|&(t, is_start, _, _)| (t, is_start));
        let mut active: BTreeMap<usize, HashMap<usize, u32>> = BTreeMap::new();
        let mut prev = 0u64;
        for (t, is_start, depth, stage) in events {
            if t > prev
                && let Some((_, stages)) = active.iter().next_back()
            {
                for &k in stages.keys() {
                    ns[k] += t - prev;
                }
            }
            prev = t;
            let level = active.entry(depth).or_default();
            if is_start {
                *level.entry(stage).or_default() += 1;
            } else {
                if let Some(c) = level.get_mut(&stage) {
                    *c -= 1;
                    if *c == 0 {
                        level.remove(&stage);
                    }
                }
                if level.is_empty() {
                    active.remove(&depth);
                }
            }
        }
        let mut stages: Vec<(&str, u64)> = names.into_iter().zip(ns).collect();
        if stages.len() > MAX_MAP_ENTRIES {
            // Keep the biggest; fold the rest into one.
            stages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let rest: u64 = stages[MAX_MAP_ENTRIES - 1..].iter().map(|s| s.1).sum();
            stages.truncate(MAX_MAP_ENTRIES - 1);
            stages.push((OTHER_STAGE, rest));
        }
        let mut out = BTreeMap::new();
        for (name, t) in stages {
            *out.entry(name.to_owned()).or_insert(0.0) += t as f64 / 1e6;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::span::{Generation, SpanUsage};

    const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    const MS: u64 = 1_000_000;

    fn span(id: u64, parent: Option<u64>, name: &str, from_ms: u64, to_ms: u64) -> SpanSummary {
        SpanSummary {
            span_id: id,
            parent_id: parent,
            name: name.into(),
            start_ns: T0 + from_ms * MS,
            end_ns: T0 + to_ms * MS,
            ..Default::default()
        }
    }

    fn staged(mut s: SpanSummary, stage: &str) -> SpanSummary {
        s.stage = Some(stage.into());
        s
    }

    fn generation(mut s: SpanSummary, model: &str, input: u64, output: u64) -> SpanSummary {
        s.stage = Some("model_inference".into());
        s.generation = Some(Generation {
            model: Some(model.into()),
            provider: Some("openai".into()),
            operation: Some("chat".into()),
            usage: SpanUsage {
                input_tokens: input,
                output_tokens: output,
                ..Default::default()
            },
            has_usage: true,
            ..Default::default()
        });
        s
    }

    fn record(spans: Vec<SpanSummary>) -> PricedRecord {
        let mut all = Vec::new();
        merge_spans(&mut all, spans);
        match assemble(&[7; 16], &all, false, &PriceTable::builtin()) {
            Assembly::Record { priced, .. } => *priced,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    fn five_span_trace() -> Vec<SpanSummary> {
        let mut root = span(1, None, "handle_request", 0, 1000);
        root.user_id = Some("u-1".into());
        root.feature = Some("chat".into());
        vec![
            root,
            staged(span(2, Some(1), "preprocessing", 1, 21), "preprocessing"),
            staged(span(3, Some(1), "guardrail", 22, 122), "guardrail"),
            generation(
                span(4, Some(1), "chat gpt-4o", 123, 923),
                "gpt-4o",
                1000,
                200,
            ),
            staged(
                span(5, Some(1), "postprocessing", 924, 954),
                "postprocessing",
            ),
        ]
    }

    #[test]
    fn texts_give_their_character_counts() {
        let mut spans = five_span_trace();
        let r = record(spans.clone()).record;
        assert_eq!((r.input_chars, r.output_chars), (None, None));
        let g = spans[3].generation.as_mut().expect("a generation");
        g.input = Some("héllo".into());
        g.output = Some("🌍 ok".into());
        let r = record(spans).record;
        assert_eq!((r.input_chars, r.output_chars), (Some(5), Some(4)));
    }

    #[test]
    fn five_span_trace_becomes_one_priced_record() {
        let pr = record(five_span_trace());
        let r = &pr.record;
        assert_eq!(r.request_id, "07".repeat(16));
        assert_eq!(r.timestamp_ms, (T0 / MS) as i64);
        assert_eq!(r.duration_ms, 1000.0);
        assert_eq!(r.model, "gpt-4o");
        assert_eq!(r.usage.input_tokens, 1000);
        assert_eq!(r.user_id.as_deref(), Some("u-1"));
        assert_eq!(r.feature.as_deref(), Some("chat"));
        let want: BTreeMap<String, f64> = [
            ("guardrail", 100.0),
            ("model_inference", 800.0),
            ("postprocessing", 30.0),
            ("preprocessing", 20.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(r.stages, want);
        assert_eq!(r.bottleneck_stage(), Some("model_inference"));
        assert_eq!(r.unaccounted_ms(), 50.0);
        // gpt-4o: $2.50 / 1M input, $10 / 1M output (hand-computed).
        assert_eq!(pr.cost_nanos, Some(2_500_000 + 2_000_000));
        assert_eq!(r.status, Status::Ok);
    }

    #[test]
    fn any_arrival_order_converges() {
        let spans = five_span_trace();
        let want = record(spans.clone());
        // Every rotation, split into two exports, with a re-sent span.
        for k in 0..spans.len() {
            let mut rotated = spans.clone();
            rotated.rotate_left(k);
            let mut stored = Vec::new();
            merge_spans(&mut stored, rotated[..2].to_vec());
            merge_spans(&mut stored, rotated[2..].to_vec());
            assert!(
                !merge_spans(&mut stored, rotated[..1].to_vec()),
                "re-send changes nothing"
            );
            let got = assemble(&[7; 16], &stored, false, &PriceTable::builtin());
            assert_eq!(
                got,
                Assembly::Record {
                    priced: Box::new(want.clone()),
                    evaluations: vec![]
                }
            );
        }
    }

    #[test]
    fn waits_for_the_root_then_forces_after_grace() {
        let spans: Vec<SpanSummary> = five_span_trace().into_iter().skip(1).collect();
        let mut stored = Vec::new();
        merge_spans(&mut stored, spans);
        let prices = PriceTable::builtin();
        assert_eq!(
            assemble(&[7; 16], &stored, false, &prices),
            Assembly::Pending
        );
        let Assembly::Record { priced, .. } = assemble(&[7; 16], &stored, true, &prices) else {
            panic!("forced");
        };
        // Earliest start (1 ms) to latest end (954 ms).
        assert_eq!(priced.record.duration_ms, 953.0);
        assert_eq!(priced.record.timestamp_ms, (T0 / MS) as i64 + 1);
        // A rootless trace with no model call is not an LLM request.
        let mut plain = Vec::new();
        merge_spans(&mut plain, vec![span(9, Some(8), "GET /health", 0, 5)]);
        assert_eq!(assemble(&[8; 16], &plain, true, &prices), Assembly::NotLlm);
        assert_eq!(
            assemble(&[8; 16], &plain, false, &prices),
            Assembly::Pending
        );
    }

    #[test]
    fn agent_loop_sums_generations_priced_by_their_own_model() {
        let root = span(1, None, "agent", 0, 5000);
        let mut tool_a = span(3, Some(1), "execute_tool search", 1000, 2000);
        tool_a.stage = Some("tool_execution".into());
        let mut tool_b = span(4, Some(1), "execute_tool fetch", 1500, 2500);
        tool_b.stage = Some("tool_execution".into());
        let pr = record(vec![
            root,
            generation(
                span(2, Some(1), "chat gpt-4o", 0, 1000),
                "gpt-4o",
                1000,
                100,
            ),
            tool_a,
            tool_b,
            generation(
                span(5, Some(1), "chat mini", 2500, 3000),
                "gpt-4o-mini",
                2000,
                500,
            ),
        ]);
        let r = &pr.record;
        assert_eq!(r.usage.input_tokens, 3000);
        assert_eq!(r.usage.output_tokens, 600);
        // gpt-4o 1000 in / 100 out = 2500 + 1000 micro-USD; gpt-4o-mini ($0.15 / $0.60)
        // 2000 in / 500 out = 300 + 300 micro-USD.
        assert_eq!(pr.cost_nanos, Some(3_500_000 + 600_000));
        assert_eq!(r.model, "gpt-4o", "the costliest call names the request");
        assert_eq!(r.stages["tool_execution"], 1500.0, "union of 1000..2500");
        assert_eq!(r.stages["model_inference"], 1500.0);
        assert_eq!(r.attributes["models"], "gpt-4o,gpt-4o-mini");
        assert_eq!(r.attributes["generations"], "2");
    }

    #[test]
    fn nested_spans_do_not_double_count() {
        // A framework span wraps the SDK's span of the same call; an HTTP span sits inside.
        let root = span(1, None, "handle", 0, 1000);
        let wrapper = generation(
            span(2, Some(1), "ChatOpenAI", 100, 900),
            "gpt-4o",
            1000,
            200,
        );
        let inner = generation(
            span(3, Some(2), "chat gpt-4o", 150, 850),
            "gpt-4o",
            1000,
            200,
        );
        let http = span(4, Some(3), "POST", 200, 800);
        // An unrecognised step containing a recognised one gets only its own time.
        let step = span(5, Some(1), "retrieve", 900, 1000);
        let embed = generation(
            span(6, Some(5), "embeddings", 920, 940),
            "text-embedding-3-small",
            10,
            0,
        );
        let pr = record(vec![root, wrapper, inner, http, step, embed]);
        let r = &pr.record;
        assert_eq!(r.usage.input_tokens, 1010, "wrapper not counted twice");
        assert_eq!(r.stages["model_inference"], 800.0 + 20.0);
        assert_eq!(r.stages["retrieve"], 80.0);
        assert!(!r.stages.contains_key("POST"));
        assert_eq!(r.stages_sum_ms(), 900.0);
    }

    #[test]
    fn lone_generation_span_is_its_own_request() {
        let only = generation(span(1, None, "chat gpt-4o", 0, 640), "gpt-4o", 10, 10);
        let pr = record(vec![only]);
        assert_eq!(pr.record.stages["model_inference"], 640.0);
        assert_eq!(pr.record.unaccounted_ms(), 0.0);
    }

    #[test]
    fn errors_unknown_models_and_request_ids() {
        let mut root = span(1, None, "handle", 0, 100);
        root.error = true;
        root.error_type = Some("RateLimitError".into());
        root.request_id = Some("req-42".into());
        let mut failed = generation(span(2, Some(1), "chat", 10, 90), "gpt-4o", 0, 0);
        failed.error = true;
        failed.generation.as_mut().unwrap().has_usage = false;
        let pr = record(vec![root, failed]);
        assert_eq!(pr.record.request_id, "req-42");
        assert_eq!(pr.record.status, Status::Error);
        assert_eq!(pr.record.error_type.as_deref(), Some("RateLimitError"));
        assert_eq!(
            pr.cost_nanos,
            Some(0),
            "a failed call to a priced model billed nothing"
        );

        let root = span(1, None, "handle", 0, 100);
        let known = generation(span(2, Some(1), "a", 0, 10), "gpt-4o", 100, 10);
        let unknown = generation(span(3, Some(1), "b", 10, 20), "my-finetune-xyz", 100, 10);
        let pr = record(vec![root, known, unknown]);
        assert_eq!(
            pr.cost_nanos, None,
            "one unpriced call makes the request unpriced"
        );
    }
}
