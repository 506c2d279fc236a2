package channel

import (
	"errors"
	"sync"
	"time"
)

// maxRepliesSeen bounds the memory of accepted replies.
const maxRepliesSeen = 1 << 20

// replySeen remembers the digests of accepted signed replies for twice the reply window, so
// that a reply is accepted at most once while its time is fresh (after that the window refuses
// it).
type replySeen struct {
	mu   sync.Mutex
	keep time.Duration
	m    map[[32]byte]time.Time
}

func newReplySeen(window time.Duration) *replySeen {
	keep := 2 * window
	if keep <= 0 {
		keep = 2 * DefaultReplyWindow
	}
	return &replySeen{keep: keep, m: map[[32]byte]time.Time{}}
}

// add records d; a digest already present is a replay (CodeBankReplyReplayed). When the memory
// is full after dropping expired digests, the reply is refused (fail closed).
func (s *replySeen) add(d []byte, now time.Time) error {
	var k [32]byte
	copy(k[:], d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.m[k]; ok && now.Before(until) {
		return fail(CodeBankReplyReplayed, errors.New("this signed reply was already accepted"))
	}
	if len(s.m) >= maxRepliesSeen {
		for key, until := range s.m {
			if !now.Before(until) {
				delete(s.m, key)
			}
		}
		if len(s.m) >= maxRepliesSeen {
			return fail(CodeInternal, errors.New("reply memory full"))
		}
	}
	s.m[k] = now.Add(s.keep)
	return nil
}
