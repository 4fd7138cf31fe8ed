//! The inference worker: one thread per engine. It owns both slot pipelines, applies the mode
//! timeline, and emits index-aligned wet samples. It never blocks the audio thread: it only
//! reads and writes lock-free rings.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::scope::ScopeAnalyzer;
use crate::stream::SpinUp;
use crate::swap::SlotPipe;
use crate::timeline::ModeTimeline;
use crate::{EngineSetup, Shared, Wet, mode_fade_samples, new_slot_stream};

fn pipes(setup: &EngineSetup) -> [SlotPipe; 2] {
    [0, 1].map(|s| SlotPipe::new(new_slot_stream(setup, s), setup.passthrough_gain[s]))
}

/// Fresh pipelines whose first output is for input index `at` (a resync or a restart).
fn pipes_from(setup: &EngineSetup, at: u64) -> [SlotPipe; 2] {
    let mut slots = pipes(setup);
    for s in slots.iter_mut() {
        s.current.start_at(at);
    }
    slots
}

/// Idles the model of every slot the timeline will not make heard (unless both slots compute
/// now, see [`crate::Unheard`]).
fn idle_unheard(slots: &mut [SlotPipe; 2], timeline: &ModeTimeline, both: bool) {
    if both {
        return;
    }
    for (s, pipe) in slots.iter_mut().enumerate() {
        if pipe.is_active() && timeline.heard_from(s).is_none() {
            pipe.set_idle();
        }
    }
}

/// Spins up every idle slot the timeline is about to make heard, exactly from the first sample
/// of its fade (never before `emitted`: what is out is out). The replay is computed here, before
/// the worker goes on with new input: its cost is the burst the latency plan budgets.
/// With `both`, every idle slot spins up (a render that turned live again), from `emitted`.
fn wake_heard(slots: &mut [SlotPipe; 2], timeline: &ModeTimeline, both: bool, emitted: u64, shared: &crate::Shared) -> Result<(), vocoder::VocoderError> {
    for (s, pipe) in slots.iter_mut().enumerate() {
        if pipe.is_active() {
            continue;
        }
        let Some(from) = timeline.heard_from(s).or(both.then_some(emitted)) else { continue };
        let t0 = Instant::now();
        let done = pipe.spin_up(from.max(emitted))?;
        let stats = &shared.stats;
        match done {
            SpinUp::Running => {}
            SpinUp::Exact { replayed } | SpinUp::Short { replayed } => {
                stats.spin_ups.fetch_add(1, Ordering::Relaxed);
                stats.spin_up_replayed.fetch_add(replayed, Ordering::Relaxed);
                let us = t0.elapsed().as_micros() as u64;
                stats.spin_up_us_max.fetch_max(us, Ordering::Relaxed);
                stats.spin_up_us_total.fetch_add(us, Ordering::Relaxed);
                if matches!(done, SpinUp::Short { .. }) {
                    stats.spin_ups_short.fetch_add(1, Ordering::Relaxed);
                }
                // Late: the audio thread already needed samples of this fade.
                if shared.needed.load(Ordering::Relaxed) > from && !shared.exact.load(Ordering::Relaxed) {
                    stats.late_spin_ups.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn spawn(setup: EngineSetup, io: crate::WorkerIo) -> JoinHandle<()> {
    let crate::WorkerIo { mut input, mut events, mut restarts, mut output, scope: scope_out, swaps, shared } = io;
    std::thread::Builder::new()
        .name("streamspeech-worker".into())
        .spawn(move || {
            // The models in use (hot swaps change them; a resync rebuilds from them).
            let mut setup = setup;
            // Planned (memoised) when the processor was built.
            let render_ahead = crate::plan(&setup).render_ahead;
            // Real time: the kernels run on the chosen share of the cores (auto: one on a small
            // machine), leaving the rest to the host. Rendering exactly (offline, or a freewheel
            // the audio thread recognised): every core, since nothing else is waiting on time.
            let all_cores = crate::machine_cores();
            let threads_now = |exact: bool| if exact { all_cores } else { setup.worker_threads.resolve(all_cores) };
            let mut exact = shared.exact.load(Ordering::Relaxed);
            let mut threads = threads_now(exact);
            vocoder::kernels::set_threads(threads);
            shared.stats.worker_threads.store(threads, Ordering::Relaxed);
            let mut slots = pipes(&setup);
            let mut timeline = ModeTimeline::new(setup.initial_slot, mode_fade_samples(setup.host_rate as f32));
            idle_unheard(&mut slots, &timeline, setup.unheard.computes_both(exact));
            let mut buf: Vec<f32> = Vec::with_capacity(8192);
            let mut wet_buf: Vec<f32> = Vec::with_capacity(8192);
            let mut scope = ScopeAnalyzer::new(setup.host_rate, scope_out);
            let mut emitted: u64 = 0;
            let mut input_pos: u64 = 0;
            let (mut busy, mut audio) = (0f64, 0f64);
            let max_behind = setup.host_rate as u64; // one second
            // Warm-up on this thread: the first call into the tensor library pays one-off costs
            // (thread-local buffers, kernel selection) that would make the first chunk late.
            // A few single frames through a throwaway stream: the tensor library's and the
            // kernels' one-off costs (kernel selection, thread-local scratch, thread pools) are
            // paid here, not by the first real-time chunk. Kept to a few frames of compute
            // whatever the chunk size, so (re-)activation stays quick (≈ 20 ms for V1).
            for v in setup.slots.iter().flatten() {
                let steps = 3;
                if let (Ok(mut st), Ok(mel)) =
                    (v.stream(), candle_core::Tensor::zeros((1, v.config().num_mels, 1), candle_core::DType::F32, v.device()))
                {
                    let mut sink = Vec::new();
                    for _ in 0..steps {
                        let _ = v.stream_step(&mut st, &mel, &mut sink);
                    }
                }
            }
            shared.ready.store(true, Ordering::Release);
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                while let Ok(e) = events.pop() {
                    timeline.schedule(e);
                }
                while let Ok(swap) = swaps.try_recv() {
                    if swap.slot < 2 {
                        setup.slots[swap.slot] = swap.vocoder;
                        let stream = new_slot_stream(&setup, swap.slot);
                        slots[swap.slot].begin_swap(stream, input_pos, setup.host_rate, mode_fade_samples(setup.host_rate as f32));
                        shared.stats.swaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
                buf.clear();
                // Live, input arrives a host block at a time; rendering exactly, a large host block
                // (the CLI's) is taken at once, so the model steps over several chunks together.
                let cap = if shared.exact.load(Ordering::Relaxed) { 1 << 16 } else { 8192 };
                // An announced bounce with render-ahead latency: small host blocks are gathered
                // until a large step's worth waits, unless the audio thread waits for a sample
                // not emitted yet. The audio is the same (steps do not change it), computed in
                // large steps.
                if render_ahead > 0
                    && shared.exact.load(Ordering::Relaxed)
                    && (input.slots() as u64) < render_ahead.min(cap as u64)
                    && shared.needed.load(Ordering::Relaxed) < emitted
                {
                    std::thread::park_timeout(Duration::from_millis(2));
                    continue;
                }
                let n = input.slots().min(cap);
                if n == 0 {
                    std::thread::park_timeout(Duration::from_millis(2));
                    continue;
                }
                if let Ok(chunk) = input.read_chunk(n) {
                    let (a, b) = chunk.as_slices();
                    buf.extend_from_slice(a);
                    buf.extend_from_slice(b);
                    chunk.commit_all();
                }
                // Events pushed before these samples are visible now.
                while let Ok(e) = events.pop() {
                    timeline.schedule(e);
                }
                let t0 = Instant::now();
                // The audio thread renders exactly (offline or a recognised freewheel): all cores,
                // and never skip input. The kernels' results do not depend on the thread count.
                exact = shared.exact.load(Ordering::Relaxed);
                if threads_now(exact) != threads {
                    threads = threads_now(exact);
                    vocoder::kernels::set_threads(threads);
                    shared.stats.worker_threads.store(threads, Ordering::Relaxed);
                }
                // A switch just read needs its slot (a spin-up replays its model here, before
                // the new input); a render that turned live again with `Unheard::Compute` wakes
                // both.
                if let Err(e) = wake_heard(&mut slots, &timeline, setup.unheard.computes_both(exact), emitted, &shared) {
                    *shared.stats.worker_error.lock() = Some(e.to_string());
                    shared.stats.worker_alive.store(false, Ordering::Release);
                    return;
                }
                // Real time only: hopelessly behind? Restart the pipelines at the present.
                let needed = shared.needed.load(Ordering::Relaxed);
                if !exact && needed > emitted + max_behind {
                    input_pos += buf.len() as u64;
                    let skip = input.slots();
                    if let Ok(c) = input.read_chunk(skip) {
                        c.commit_all();
                    }
                    input_pos += skip as u64;
                    slots = pipes_from(&setup, input_pos);
                    idle_unheard(&mut slots, &timeline, setup.unheard.computes_both(exact));
                    emitted = input_pos;
                    scope.restart(input_pos);
                    shared.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Hold back half a fade: a switch at input t fades from t - fade/2, and it is only
                // known once input t has been read.
                let lookahead = mode_fade_samples(setup.host_rate as f32) / 2;
                // The buffer in segments, cut where the audio thread asked the streams to restart
                // (the host's transport started or jumped, see `EngineProcessor::restart_at`).
                let mut seg_start = 0;
                loop {
                    let first = input_pos;
                    let remaining = (buf.len() - seg_start) as u64;
                    let restart_at = match restarts.peek() {
                        Ok(&r) if r < first + remaining => Some(seg_start + (r.max(first) - first) as usize),
                        _ => None,
                    };
                    let cut = restart_at.unwrap_or(buf.len());
                    let seg = &buf[seg_start..cut];
                    input_pos += seg.len() as u64;
                    scope.push_input(seg);
                    for s in slots.iter_mut() {
                        if let Err(e) = s.push(seg, first) {
                            *shared.stats.worker_error.lock() = Some(e.to_string());
                            shared.stats.worker_alive.store(false, Ordering::Release);
                            return;
                        }
                    }
                    let ready = slots
                        .iter()
                        .filter(|s| s.is_active())
                        .map(|s| s.ready_end())
                        .fold(input_pos.saturating_sub(lookahead), u64::min);
                    wet_buf.clear();
                    while emitted < ready {
                        let a = slots[0].pop(emitted);
                        let b = slots[1].pop(emitted);
                        let (sa, ga, sb, gb) = timeline.gains_at(emitted);
                        let pick = |s: usize| if s == 0 { a } else { b };
                        let value = ga * pick(sa) + gb * pick(sb);
                        wet_buf.push(value);
                        if !push_wet(&mut output, Wet { index: emitted, value }, &shared) {
                            return;
                        }
                        emitted += 1;
                    }
                    scope.push_wet(&wet_buf);
                    // A fade that finished leaves its first slot unheard.
                    idle_unheard(&mut slots, &timeline, setup.unheard.computes_both(exact));
                    if restart_at.is_some() {
                        let _ = restarts.pop();
                        // The old streams end here: what they have not emitted (it needed input
                        // past this point) is silence; the new ones start fresh at this sample,
                        // exactly as a render of the audio from here on does.
                        while emitted < input_pos {
                            if !push_wet(&mut output, Wet { index: emitted, value: 0.0 }, &shared) {
                                return;
                            }
                            emitted += 1;
                        }
                        slots = pipes_from(&setup, input_pos);
                        idle_unheard(&mut slots, &timeline, setup.unheard.computes_both(exact));
                        scope.restart(input_pos);
                        shared.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    }
                    seg_start = cut;
                    if restart_at.is_none() {
                        break;
                    }
                }
                shared.consumed.store(input_pos, Ordering::Release);
                busy += t0.elapsed().as_secs_f64();
                audio += buf.len() as f64 / setup.host_rate as f64;
                if audio > 0.5 {
                    shared.stats.worker_rtf.store((busy / audio) as f32, Ordering::Relaxed);
                    busy = 0.0;
                    audio = 0.0;
                }
            }
            shared.stats.worker_alive.store(false, Ordering::Release);
        })
        .expect("spawn worker thread")
}

/// Hands one wet sample to the audio thread. It drains at least as fast as real time; offline it
/// waits on us, so a full ring only means we are ahead: wait for room. False: the engine stops.
pub(crate) fn push_wet(output: &mut rtrb::Producer<Wet>, mut w: Wet, shared: &Shared) -> bool {
    loop {
        match output.push(w) {
            Ok(()) => return true,
            Err(rtrb::PushError::Full(back)) => {
                w = back;
                if shared.stop.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}
