package docstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/x/bsonx/bsoncore"
)

// Guard is the authenticating front of a standalone document store.
//
// FerretDB v1.24's embeddable package has no user store of its own: its PLAIN
// mechanism hands the client's credentials to PostgreSQL (and does nothing on
// SQLite). So the standalone store keeps FerretDB on a private Unix socket and
// serves the MongoDB wire protocol through this guard: before a connection has
// authenticated (SASL PLAIN, the mechanism FerretDB's clients already use,
// `authMechanism=PLAIN` in the URI), only the handshake commands pass; after,
// bytes are copied both ways untouched.
type Guard struct {
	Username, Password string // the one login (from the environment)
	// Dial reaches FerretDB's private listener.
	Dial func(ctx context.Context) (net.Conn, error)
	Log  *slog.Logger
	// FailDelay is waited before a refused login is answered (default 500 ms):
	// a connection gets one try, so guessing costs a connection and this delay.
	FailDelay time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// OP codes of the MongoDB wire protocol.
const (
	opQuery = 2004
	opMsg   = 2013
)

// maxPreAuthMessage bounds what an unauthenticated client may send at once.
const maxPreAuthMessage = 64 << 10

// unauthenticated are the commands MongoDB answers before authentication:
// the handshake and server monitoring (the driver's monitor connections never
// authenticate), nothing that reads or writes data.
var unauthenticated = map[string]bool{"hello": true, "isMaster": true, "ismaster": true, "buildInfo": true, "buildinfo": true, "ping": true}

// Serve accepts connections on ln until ctx ends, then closes every
// connection it holds.
func (g *Guard) Serve(ctx context.Context, ln net.Listener) error {
	if g.Username == "" || len(g.Password) < 12 {
		return errors.New("docstore guard: a username and a password of at least 12 characters are required")
	}
	if g.FailDelay == 0 {
		g.FailDelay = 500 * time.Millisecond
	}
	g.conns = map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		for c := range g.conns {
			_ = c.Close()
		}
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("docstore guard accept: %w", err)
		}
		g.track(c, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer g.track(c, false)
			g.handle(ctx, c)
		}()
	}
}

func (g *Guard) track(c net.Conn, add bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if add {
		g.conns[c] = struct{}{}
		return
	}
	delete(g.conns, c)
	_ = c.Close()
}

// handle runs one client connection: the pre-authentication conversation,
// then a plain byte pipe to FerretDB.
func (g *Guard) handle(ctx context.Context, c net.Conn) {
	in := bufio.NewReader(c)
	var back net.Conn
	var backIn *bufio.Reader
	defer func() {
		if back != nil {
			_ = back.Close()
		}
	}()
	dial := func() error {
		if back != nil {
			return nil
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		if back, err = g.Dial(dctx); err != nil {
			return err
		}
		backIn = bufio.NewReader(back)
		return nil
	}
	for {
		msg, err := readMessage(in, maxPreAuthMessage)
		if err != nil {
			return // closed, or not the wire protocol, or too large before login
		}
		reqID := int32(binary.LittleEndian.Uint32(msg[4:8]))
		op := int32(binary.LittleEndian.Uint32(msg[12:16]))
		cmd, doc, err := command(op, msg)
		if err != nil {
			return
		}
		switch {
		case unauthenticated[cmd]:
			if err := dial(); err != nil {
				g.Log.Warn("docstore guard: backend unreachable", "err", err)
				return
			}
			if _, err := back.Write(msg); err != nil {
				return
			}
			reply, err := readMessage(backIn, 16<<20)
			if err != nil {
				return
			}
			if _, err := c.Write(reply); err != nil {
				return
			}
		case cmd == "saslStart" && op == opMsg:
			if !g.checkPlain(doc) {
				time.Sleep(g.FailDelay)
				g.Log.Warn("docstore guard: login refused", "remote", c.RemoteAddr().String())
				_, _ = c.Write(replyMsg(reqID, bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "Authentication failed."},
					{Key: "code", Value: int32(18)}, {Key: "codeName", Value: "AuthenticationFailed"}}))
				return
			}
			if err := dial(); err != nil {
				g.Log.Warn("docstore guard: backend unreachable", "err", err)
				return
			}
			if _, err := c.Write(replyMsg(reqID, bson.D{{Key: "conversationId", Value: int32(1)}, {Key: "done", Value: true},
				{Key: "payload", Value: primitive.Binary{Data: []byte{}}}, {Key: "ok", Value: 1.0}})); err != nil {
				return
			}
			pipe(c, in, back, backIn)
			return
		default:
			if op != opMsg {
				return
			}
			if _, err := c.Write(replyMsg(reqID, bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "command " + cmd + " requires authentication"},
				{Key: "code", Value: int32(13)}, {Key: "codeName", Value: "Unauthorized"}})); err != nil {
				return
			}
		}
	}
}

// pipe copies both ways until either side closes.
func pipe(client net.Conn, clientIn io.Reader, back net.Conn, backIn io.Reader) {
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(back, clientIn)
		_ = back.Close()
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(client, backIn)
		_ = client.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// checkPlain verifies a SASL PLAIN saslStart ("authzid\0user\0password").
func (g *Guard) checkPlain(doc bsoncore.Document) bool {
	mech, ok := doc.Lookup("mechanism").StringValueOK()
	if !ok || mech != "PLAIN" {
		return false
	}
	_, payload, ok := doc.Lookup("payload").BinaryOK()
	if !ok {
		return false
	}
	parts := bytes.SplitN(payload, []byte{0}, 3)
	if len(parts) != 3 {
		return false
	}
	user, pass := parts[1], parts[2]
	uok := subtle.ConstantTimeCompare(user, []byte(g.Username))
	pok := subtle.ConstantTimeCompare(pass, []byte(g.Password))
	return uok&pok == 1
}

// readMessage reads one length-framed wire message.
func readMessage(r *bufio.Reader, limit int) ([]byte, error) {
	head, err := r.Peek(16)
	if err != nil {
		return nil, err
	}
	n := int(int32(binary.LittleEndian.Uint32(head[:4])))
	if n < 16 || n > limit {
		return nil, fmt.Errorf("wire message of %d bytes", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// command returns the command name and document of an OP_MSG or of an
// OP_QUERY on a $cmd collection.
func command(op int32, msg []byte) (string, bsoncore.Document, error) {
	body := msg[16:]
	var doc bsoncore.Document
	switch op {
	case opMsg:
		if len(body) < 5 {
			return "", nil, errors.New("short OP_MSG")
		}
		flags := binary.LittleEndian.Uint32(body[:4])
		sections := body[4:]
		if flags&1 != 0 { // checksumPresent
			if len(sections) < 4 {
				return "", nil, errors.New("short OP_MSG")
			}
			sections = sections[:len(sections)-4]
		}
		for len(sections) > 0 && doc == nil {
			kind := sections[0]
			sections = sections[1:]
			d, rest, ok := bsoncore.ReadDocument(sections)
			switch {
			case kind == 0 && ok:
				doc = d
			case kind == 1 && len(sections) >= 4:
				size := int(int32(binary.LittleEndian.Uint32(sections[:4])))
				if size < 4 || size > len(sections) {
					return "", nil, errors.New("bad OP_MSG section")
				}
				rest = sections[size:]
			default:
				return "", nil, errors.New("bad OP_MSG section")
			}
			sections = rest
		}
	case opQuery:
		if len(body) < 4 {
			return "", nil, errors.New("short OP_QUERY")
		}
		rest := body[4:]
		i := 0
		for i < len(rest) && rest[i] != 0 {
			i++
		}
		if i >= len(rest) || i < 5 || string(rest[i-5:i]) != ".$cmd" {
			return "", nil, errors.New("OP_QUERY outside $cmd")
		}
		rest = rest[i+1:]
		if len(rest) < 8 {
			return "", nil, errors.New("short OP_QUERY")
		}
		d, _, ok := bsoncore.ReadDocument(rest[8:])
		if !ok {
			return "", nil, errors.New("bad OP_QUERY document")
		}
		doc = d
		if q, ok := doc.Lookup("$query").DocumentOK(); ok {
			doc = q
		}
	default:
		return "", nil, fmt.Errorf("op code %d", op)
	}
	if doc == nil || doc.Validate() != nil {
		return "", nil, errors.New("no command document")
	}
	el, err := doc.IndexErr(0)
	if err != nil {
		return "", nil, err
	}
	return el.Key(), doc, nil
}

// replyMsg encodes an OP_MSG reply to request reqID.
func replyMsg(reqID int32, doc bson.D) []byte {
	raw, err := bson.Marshal(doc)
	if err != nil {
		panic(err) // only fixed documents of ours are encoded here
	}
	out := make([]byte, 16+4+1+len(raw))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], 0)
	binary.LittleEndian.PutUint32(out[8:], uint32(reqID))
	binary.LittleEndian.PutUint32(out[12:], opMsg)
	// flags 0, then section kind 0
	out[20] = 0
	copy(out[21:], raw)
	return out
}
