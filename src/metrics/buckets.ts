/** Latency histogram buckets (seconds) of every front end's request-duration metrics: 0.5 ms to 60 s. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
