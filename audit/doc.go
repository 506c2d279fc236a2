// Package audit is gmgate's evidence log (docs/audit.md): an append-only, hash-chained log of
// every inbound and outbound decision, sealed by checkpoints signed with the platform key,
// rotated in segments, with its verification (VerifyFile: the chain; Problems: completeness) and
// its witnesses (signed chain heads published where the gateway host cannot rewrite them).
//
// The gateway (gm_verify) and the bank channel (gm_channel) write to it through Sink; it imports
// no other gmgate package.
package audit
