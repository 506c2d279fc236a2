// Package cryptosvc is gmgate's crypto service for the platform's own systems (settlement, risk,
// reconciliation, customer service): one authenticated API that signs and verifies, encrypts and
// decrypts, wraps data keys, computes HMACs and checks certificates with the keys the vault
// already holds, so that no internal system links its own cryptography or holds its own keys
// (the GM/T 0029 signature server, shaped like HashiCorp Vault's transit engine; see
// docs/crypto-service.md).
//
// The service is transport-free: a caller (already authenticated by its TLCP or TLS client
// certificate, see Policy.Identify) hands Service.Do an operation and its JSON body; Do parses
// and bounds the body (ParseRequest), checks the policy (which caller may use which key for
// which operation, and the lowest key version it may decrypt), performs the operation with the
// vault's keys, writes one audit entry through audit.Sink and returns the JSON response or a
// *refusal.Error of this package's catalog. The Caddy handler gm_crypto is a thin adapter.
//
// Ciphertexts name their key version ("gm:v3:<base64>"); the key's name and version, and the
// caller's optional context, are bound as additional authenticated data, so a ciphertext of
// one key never opens under another, and a ciphertext whose version prefix was rewritten fails
// authentication.
package cryptosvc
