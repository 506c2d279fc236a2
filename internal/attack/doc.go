// Package attack holds the reusable attacker of gmgate's adversarial test
// suite: capturing a signed request, rewriting its fields, replaying it, an
// oracle loop that queries a target with chosen ciphertexts, and hostile or
// slow network peers. Each finding of the security review has a regression
// test written with these helpers: it must show the attack working against
// the code that had the hole and failing against the fix.
//
// The package is for tests only; no production package imports it.
package attack
