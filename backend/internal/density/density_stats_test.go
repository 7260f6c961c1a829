package density

import (
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	m := New()
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	if _, ok := m.Stats(33.57, -7.59, Res, now); ok {
		t.Fatal("empty map has stats")
	}
	c, err := CellOf(33.57, -7.59, 9)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.OrderOpened("o1", c); err != nil {
		t.Fatal(err)
	}
	if err := m.Booked(c, now); err != nil {
		t.Fatal(err)
	}
	s, ok := m.Stats(33.57, -7.59, Res, now)
	if !ok || s.OpenOrders != 1 || s.Booked15m != 1 {
		t.Fatalf("stats = %+v, %v", s, ok)
	}
	if s, ok := m.Stats(33.57, -7.59, CityRes, now.Add(20*time.Minute)); !ok || s.OpenOrders != 1 || s.Booked15m != 0 || s.Booked60m != 1 {
		t.Fatalf("city stats = %+v, %v", s, ok)
	}
}
