package discordemu

import (
	"math/big"
	"strconv"
	"time"
)

// DiscordEpochMS is the Discord snowflake epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DiscordEpochMS int64 = 1420070400000

type snowState struct {
	LastMS int64 `json:"last_ms"`
	Inc    int64 `json:"inc"`
}

// next returns a new snowflake (§5): worker 1, process 1, 12-bit increment per ms.
// With a fixed epoch (deterministic mode) the millisecond only advances when the
// increment overflows.
func (s *snowState) next(now time.Time, epochMS int64) string {
	ms := now.UnixMilli()
	if epochMS != 0 {
		ms = epochMS
	}
	if ms < s.LastMS {
		ms = s.LastMS
	}
	if ms == s.LastMS {
		s.Inc++
		if s.Inc > 0xFFF {
			ms++
			s.Inc = 0
		}
	} else {
		s.Inc = 0
	}
	s.LastMS = ms
	id := ((ms - DiscordEpochMS) << 22) | (1 << 17) | (1 << 12) | s.Inc
	return strconv.FormatInt(id, 10)
}

// SnowflakeTime returns the creation time encoded in a snowflake.
func SnowflakeTime(id string) (time.Time, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(n>>22) + DiscordEpochMS), true
}

func isSnowflake(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// snowLess orders decimal ids numerically.
func snowLess(a, b string) bool {
	if len(a) != len(b) {
		ai, aok := new(big.Int).SetString(a, 10)
		bi, bok := new(big.Int).SetString(b, 10)
		if aok && bok {
			return ai.Cmp(bi) < 0
		}
		return len(a) < len(b)
	}
	return a < b
}
