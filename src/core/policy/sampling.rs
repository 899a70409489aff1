//! Head sampling of root traces by a ratio, decided from the trace id alone, the way
//! OpenTelemetry's consistent probability sampling does with W3C Trace Context Level 2's random
//! trace ids: the rightmost 56 bits are the randomness `R`, and a trace is sampled when `R` is at
//! least the threshold `(1 - ratio) * 2^56`. Every replica, and every later sampler in the trace
//! that follows the same rule, decides the same for the same trace id.

use crate::core::context::TraceId;

/// 2^56: the randomness values of a trace id.
const RANDOMNESS: u64 = 1 << 56;

/// The randomness of a trace id: its rightmost 7 bytes.
fn randomness(trace_id: TraceId) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[1..].copy_from_slice(&trace_id.0[9..]);
    u64::from_be_bytes(bytes)
}

/// The rejection threshold for `ratio` (clamped to 0..=1).
fn threshold(ratio: f64) -> u64 {
    let ratio = if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    // Exact at both ends; in between, within one part in 2^53 of the ratio.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rejected = ((1.0 - ratio) * RANDOMNESS as f64).round() as u64;
    rejected.min(RANDOMNESS)
}

/// Whether a root trace with `trace_id` is sampled at `ratio`.
pub fn sampled(trace_id: TraceId, ratio: f64) -> bool {
    randomness(trace_id) >= threshold(ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(low: u64) -> TraceId {
        let mut bytes = [0xff; 16];
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        TraceId(bytes)
    }

    #[test]
    fn ratio_one_samples_everything_and_zero_nothing() {
        for low in [0, 1, RANDOMNESS / 2, RANDOMNESS - 1] {
            assert!(sampled(id(low), 1.0), "{low}");
            assert!(!sampled(id(low), 0.0), "{low}");
        }
    }

    #[test]
    fn only_the_rightmost_56_bits_decide() {
        // The byte left of the 56 bits (0xff here) is not randomness.
        assert!(!sampled(id(RANDOMNESS / 2 - 1), 0.5));
        assert!(sampled(id(RANDOMNESS / 2), 0.5));
        let mut left = id(RANDOMNESS / 2 - 1);
        left.0[8] = 0x00;
        assert!(!sampled(left, 0.5));
    }

    #[test]
    fn the_share_sampled_follows_the_ratio() {
        // Evenly spread randomness values: the share sampled is the ratio.
        let steps = 10_000u64;
        for ratio in [0.01, 0.25, 0.5, 0.9] {
            let hits = (0..steps)
                .filter(|i| sampled(id(i * (RANDOMNESS / steps)), ratio))
                .count();
            #[allow(clippy::cast_precision_loss)]
            let share = hits as f64 / steps as f64;
            assert!((share - ratio).abs() < 0.001, "{ratio}: {share}");
        }
    }
}
