// Package topic names the MQTT topics of the Tawsil contract and parses them.
//
// The courier a message is about always comes from its topic (which the broker
// binds to the device's credentials), never from its payload.
package topic

import (
	"strings"
	"unicode/utf8"
)

// DefaultPrefix is the topic prefix used unless configured otherwise.
const DefaultPrefix = "tawsil/v1"

// OwnTracksRoot is the first topic level of the OwnTracks app's location topics
// (owntracks/{user}/{device}); the OwnTracks user name is the courier id.
const OwnTracksRoot = "owntracks"

// Kind is the last level of a courier topic.
type Kind string

// The courier topic kinds.
const (
	Pos       Kind = "pos"       // device → backend, QoS1: a batch of fixes
	State     Kind = "state"     // device → backend, QoS1 retained: online, battery, shift
	Tasks     Kind = "tasks"     // backend → device, QoS1: offers, assignments, route plans
	Config    Kind = "config"    // backend → device, QoS1 retained: the device profile
	Ack       Kind = "ack"       // backend → device, QoS0: storage acknowledgements (wire.Ack)
	OwnTracks Kind = "owntracks" // device → backend, QoS1: OwnTracks location JSON
)

// Compact topics. MQTT 3.1.1 has no topic alias, so every PUBLISH carries
// its whole topic: "tawsil/v1/couriers/<24-char id>/pos" is 47 of the ~100
// bytes of a 5-fix message. Positions and their storage acknowledgements,
// the two per-fix flows, may therefore travel on a short form of the
// courier's topics, under CompactRoot(prefix):
//
//	{root}/{courier}     device → backend, like {prefix}/couriers/{courier}/pos
//	{root}/{courier}/a   backend → device, like {prefix}/couriers/{courier}/ack
//
// The root is "t" for the default prefix and the prefix itself for any
// other (so deployments that share a broker under their own prefixes keep
// apart). Parse accepts both forms; the backend answers a position with an
// acknowledgement in the form it came in.
const DefaultCompactRoot = "t"

// compactAck is the last level of a compact acknowledgement topic.
const compactAck = "a"

// CompactRoot is the root of the compact topics under prefix.
func CompactRoot(prefix string) string {
	if prefix == DefaultPrefix {
		return DefaultCompactRoot
	}
	return prefix
}

// CompactCourier returns the compact topic of kind (Pos or Ack) for one
// courier, for example "t/c42" or "t/c42/a"; any other kind has no
// compact form and gets Courier's topic.
func CompactCourier(prefix, courier string, kind Kind) string {
	switch kind {
	case Pos:
		return CompactRoot(prefix) + "/" + courier
	case Ack:
		return CompactRoot(prefix) + "/" + courier + "/" + compactAck
	}
	return Courier(prefix, courier, kind)
}

// CompactFilter is the subscription filter of every courier's compact
// position topic ("t/+").
func CompactFilter(prefix string) string { return CompactRoot(prefix) + "/+" }

// IsCompact reports whether t is a compact topic (see CompactCourier).
func IsCompact(prefix, t string) bool {
	_, _, ok := parseCompact(prefix, t)
	return ok
}

func parseCompact(prefix, t string) (string, Kind, bool) {
	rest, found := strings.CutPrefix(t, CompactRoot(prefix)+"/")
	if !found {
		return "", "", false
	}
	id, sub, hasSub := strings.Cut(rest, "/")
	switch {
	case !ValidID(id):
		return "", "", false
	case !hasSub:
		return id, Pos, true
	case sub == compactAck:
		return id, Ack, true
	}
	return "", "", false
}

// MaxIDLen is the longest courier id accepted in a topic.
const MaxIDLen = 64

// ValidID reports whether id can stand as one topic level for a courier or a
// device: 1..64 characters of [A-Za-z0-9_-]. Wildcards, separators, '$' and
// empty levels are refused, so an id can never widen a subscription or an ACL.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// ValidDevice reports whether name can stand as the device level of an
// OwnTracks topic: 1..64 bytes of UTF-8 without wildcards, separators or
// control characters. It is wider than ValidID because the apps default to
// the phone's name ("Ali's iPhone"); the courier still comes from the user
// level, which must pass ValidID.
func ValidDevice(name string) bool {
	if len(name) == 0 || len(name) > MaxIDLen || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '+' || r == '#' || r == '/' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// Courier returns the topic of the given kind for one courier, for example
// "tawsil/v1/couriers/c42/pos". It does not validate the id.
func Courier(prefix, courier string, kind Kind) string {
	return prefix + "/couriers/" + courier + "/" + string(kind)
}

// OwnTracksTopic returns "owntracks/{courier}/{device}".
func OwnTracksTopic(courier, device string) string {
	return OwnTracksRoot + "/" + courier + "/" + device
}

// Filter returns the subscription filter for one kind over all couriers,
// for example "tawsil/v1/couriers/+/pos".
func Filter(prefix string, kind Kind) string {
	if kind == OwnTracks {
		return OwnTracksRoot + "/+/+"
	}
	return prefix + "/couriers/+/" + string(kind)
}

// Shared wraps a filter in an MQTT v5 / Mosquitto shared subscription so that
// replicas of the backend split the messages between them.
func Shared(group, filter string) string {
	return "$share/" + group + "/" + filter
}

// ParseOwnTracksSub splits an OwnTracks app's auxiliary topic,
// owntracks/{user}/{device}/{sub} (event, info, waypoint, waypoints, cmd,
// status, step, beacon, dump), into its levels. Those topics carry no fix;
// ok is false for anything else, including ids that fail ValidID and sub
// levels that are not one plain level.
func ParseOwnTracksSub(t string) (user, device, sub string, ok bool) {
	rest, found := strings.CutPrefix(t, OwnTracksRoot+"/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !ValidID(parts[0]) || !ValidDevice(parts[1]) || !ValidID(parts[2]) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Parse splits a concrete (wildcard-free) topic, long or compact, into the
// courier and the kind.
// ok is false for any topic outside the contract, including ids that fail ValidID.
func Parse(prefix, t string) (courier string, kind Kind, ok bool) {
	if rest, found := strings.CutPrefix(t, OwnTracksRoot+"/"); found {
		user, device, found := strings.Cut(rest, "/")
		if !found || !ValidID(user) || !ValidDevice(device) {
			return "", "", false
		}
		return user, OwnTracks, true
	}
	if id, k, ok := parseCompact(prefix, t); ok {
		return id, k, true
	}
	rest, found := strings.CutPrefix(t, prefix+"/couriers/")
	if !found {
		return "", "", false
	}
	id, k, found := strings.Cut(rest, "/")
	if !found || !ValidID(id) {
		return "", "", false
	}
	switch Kind(k) {
	case Pos, State, Tasks, Config, Ack:
		return id, Kind(k), true
	}
	return "", "", false
}
