// Package shared is the wire contract between the Tawsil agent and backend.
//
// It holds only standard-library code: topic names (package topic), message
// types and codecs (package wire) and device profiles (package profile).
package shared
