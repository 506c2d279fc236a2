// Package redisledger keeps a sealstore.Ledger in Redis: the replay store's server, outside the
// store directory, so that someone who can write that directory cannot roll a record file back
// (the Caddy adapter uses it with `replay { store redis }`).
package redisledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/internal/abuse"
	"github.com/gmgate/gmgate/sealstore"
)

// maxEntrySize bounds an entry read from Redis (MaxVersions numbers).
const maxEntrySize = 8 << 10

// Ledger keeps one Redis hash per record: <Prefix><record> with the entry's Max and its JSON.
// An entry never replaces one with a higher Max (two instances write in turn under the
// record's lock; an older writer cannot lower it).
type Ledger struct {
	abuse.RedisStore
}

// New returns the ledger over st (its Check must pass).
func New(st abuse.RedisStore) (Ledger, error) {
	if err := st.Check(); err != nil {
		return Ledger{}, err
	}
	return Ledger{st}, nil
}

// storeScript sets the entry unless the key holds a higher max.
var storeScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'max')
if cur and tonumber(cur) > tonumber(ARGV[1]) then
	return redis.error_reply('sealstore ledger: entry would go back')
end
redis.call('HSET', KEYS[1], 'max', ARGV[1], 'entry', ARGV[2])
return 1
`)

// LoadEntry returns the entry of record, or nil when none is recorded.
func (l Ledger) LoadEntry(record string) (*sealstore.LedgerEntry, error) {
	ctx, cancel := l.RoundTrip(context.Background())
	defer cancel()
	data, err := l.Client.HGet(ctx, l.Prefix+record, "entry").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(data) > maxEntrySize {
		return nil, errors.New("sealstore ledger: entry in Redis too large")
	}
	var e sealstore.LedgerEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("sealstore ledger: entry in Redis: %w", err)
	}
	return &e, nil
}

// StoreEntry records e for record unless an entry with a higher Max is recorded (an error).
func (l Ledger) StoreEntry(record string, e sealstore.LedgerEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := l.RoundTrip(context.Background())
	defer cancel()
	return storeScript.Run(ctx, l.Client, []string{l.Prefix + record}, strconv.Itoa(e.Max), data).Err()
}

var _ sealstore.Ledger = Ledger{}
