package store

import "time"

// SetClock replaces the store's clock, so that tests of leases and
// retention move time instead of waiting for it.
func (s *Store) SetClock(now func() time.Time) { s.now = now }
