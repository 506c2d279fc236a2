// Package cosign is two-party (collaborative) SM2 signing and decryption: the scheme of Liu and
// Lin that Tongsuo ships as sm2_threshold. A terminal holds d_1, the platform holds d_2, the
// joint public key P = d_1^-1 P_2 - G = d_2^-1 P_1 - G is an ordinary SM2 public key, and
// (1 + d)^-1 = d_1 d_2 for its (never assembled) private key d.
//
// Signing takes one round trip:
//
//	terminal (StartSign)     e = SM3(Z_A(P, ID) || M), w_1 random, Q_1 = w_1 G     -> e, Q_1
//	platform (Share.CoSign)  w_2 random, Q = w_2 G + d_2^-1 Q_1, r = e + x_Q,
//	                         s_1 = d_2 (r + w_2)                                   <- r, s_1
//	terminal (Signing.Finish) s = d_1 (s_1 + w_1) - r, refuse s = 0 or r + s = n,
//	                         verify (r, s) under P before releasing it.
//
// Decryption of an SM2 ciphertext (C1, C3, C2) under P takes one round trip too:
//
//	terminal (StartDecrypt)    w random, T_1 = w C1                               -> T_1
//	platform (Share.CoDecrypt) T_2 = d_2^-1 T_1                                    <- T_2
//	terminal (Decryption.Finish) (x_2, y_2) = (w d_1)^-1 T_2 - C1 = d C1, then the ordinary
//	                         KDF, XOR and C3 check; the plaintext exists only at the terminal.
//
// All curve arithmetic is gmsm's (sm2/sm2ec), inversion modulo n is gmsm's constant-time
// P256OrdInverse (through the curve's Inverse), multiplication and addition modulo n are
// filippo.io/bigmod's constant-time Nat. Every point that crosses the wire is validated (on the
// curve, not the identity: the curve has cofactor 1), every scalar is range checked, and
// degenerate values (r = 0, s_1 = 0, s = 0, r + k = n) are refused. docs/cosign.md states what
// the scheme protects and what it does not.
package cosign
