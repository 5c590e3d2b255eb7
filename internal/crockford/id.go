// Package crockford holds Crockford's base-32 alphabet, which obol's key
// secrets and ids are written in, and the request ids made of it (ULIDs).
package crockford

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// Alphabet is Crockford's base-32: no I, L, O or U, so that an id
// survives being read aloud or retyped.
const Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns prefix_ULID: 48 bits of milliseconds and 80 random bits,
// so ids sort by time and never repeat across replicas.
func NewID(prefix string) string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint16(b[0:], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:], uint32(ms))
	rand.Read(b[6:])
	out := make([]byte, 0, len(prefix)+27)
	out = append(out, prefix...)
	out = append(out, '_')
	// 128 bits as 26 base-32 digits, most significant first (the first
	// digit carries the top 3 bits).
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := 25; i >= 0; i-- {
		shift := uint(i * 5)
		var v uint64
		switch {
		case shift >= 64:
			v = hi >> (shift - 64)
		case shift > 59:
			v = lo>>shift | hi<<(64-shift)
		default:
			v = lo >> shift
		}
		out = append(out, Alphabet[v&31])
	}
	return string(out)
}
