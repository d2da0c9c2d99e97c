package sqldb

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// NodeName names the calling process for the tables in which nodes say
// they are alive: the host, the process id and a random part, so that two
// followers in one process (tests start several) have names of their own.
func NodeName() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + rand.Text()[:8]
}

// Listen holds a PostgreSQL connection of its own that LISTENs on channel,
// until ctx ends or the connection fails (the error says which). Once
// LISTEN has taken effect, ready runs on that connection (a follower reads
// there what it may have missed before), then notify runs for every
// notification's payload in turn. The connection is never given back to
// the pool, which must not hand out a connection that listens.
func (db *DB) Listen(ctx context.Context, channel string, ready func(ctx context.Context, c *pgx.Conn) error, notify func(payload string)) error {
	conn, err := db.W().SQL().Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("listen: not a pgx connection (%T)", dc)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize()); err != nil {
			return errors.Join(err, driver.ErrBadConn)
		}
		if err := ready(ctx, pc); err != nil {
			return errors.Join(err, driver.ErrBadConn)
		}
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				return errors.Join(err, driver.ErrBadConn)
			}
			notify(n.Payload)
		}
	})
}
