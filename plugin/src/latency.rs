//! The `Latency` parameter and the latency the plugin reports, computed in one place (the
//! engine's planner) so the host-facing value and the engine's own value never disagree.

use std::sync::Arc;

use nice_plug::prelude::Enum;
use vocoder::Vocoder;

/// The `Latency` parameter: the processing block (chunk) the engine works in.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyChoice {
    #[id = "20ms"]
    #[name = "20 ms"]
    Ms20,
    #[id = "40ms"]
    #[name = "40 ms"]
    Ms40,
    #[id = "80ms"]
    #[name = "80 ms"]
    Ms80,
    #[id = "160ms"]
    #[name = "160 ms"]
    Ms160,
    #[id = "320ms"]
    #[name = "320 ms"]
    Ms320,
    #[id = "640ms"]
    #[name = "640 ms"]
    Ms640,
}

impl LatencyChoice {
    pub const ALL: [LatencyChoice; 6] = [
        LatencyChoice::Ms20,
        LatencyChoice::Ms40,
        LatencyChoice::Ms80,
        LatencyChoice::Ms160,
        LatencyChoice::Ms320,
        LatencyChoice::Ms640,
    ];

    pub fn millis(self) -> u32 {
        match self {
            LatencyChoice::Ms20 => 20,
            LatencyChoice::Ms40 => 40,
            LatencyChoice::Ms80 => 80,
            LatencyChoice::Ms160 => 160,
            LatencyChoice::Ms320 => 320,
            LatencyChoice::Ms640 => 640,
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap()
    }
}

/// The latency (host samples) the engine has for these inputs: data latency of the slots'
/// pipelines plus the worker's compute margin (max of chunk and host block). The engine memoises
/// its plans process-wide, so this is cheap after the first call for a rate.
pub fn planned_latency(host_rate: u32, max_block: usize, choice: LatencyChoice, slots: &[Option<Arc<Vocoder>>; 2], unheard: engine::Unheard) -> u32 {
    engine::plan(&engine::EngineSetup {
        host_rate,
        channels: 1,
        max_block,
        chunk_ms: choice.millis(),
        slots: slots.clone(),
        initial_slot: 0,
        offline: true,
        passthrough_gain: [1.0, 1.0],
        worker_threads: engine::WorkerThreads::new(1),
        unheard,
        render_ahead: false,
    })
    .total()
}
