package quota_test

import (
	"context"
	"fmt"

	"github.com/obol/obol/quota"
)

// A request reserves its estimate; settlement replaces it by what the
// backend used, and the rest goes back to the key.
func ExampleMemory() {
	ctx := context.Background()
	m := quota.NewMemory()
	lim := quota.Limits{RPM: 20, TPM: 40000, TPD: 250000}

	d, _ := m.Admit(ctx, quota.One("key_a", lim), 4100, 0) // prompt estimate + max_tokens
	fmt.Println(d.Allowed, d.RequestsRemaining, d.TokensRemaining)
	m.Settle(ctx, d.Reservation, 350, 0) // the backend reported 350 tokens

	d, _ = m.Peek(ctx, quota.One("key_a", lim))
	fmt.Println(d.DailyUsed)
	// Output:
	// true 19 35900
	// 350
}
