package mysql_test

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"testing"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/talos-project/talos/controlplane/store/mysql"
	"github.com/talos-project/talos/pkg/credential"
)

func TestDialect_Classify(t *testing.T) {
	t.Parallel()
	d := mysql.Dialect()
	for _, tt := range []struct {
		err       error
		want      error
		retryable bool
	}{
		{err: &mysqldriver.MySQLError{Number: 1062}, want: credential.ErrConflict},
		{err: &mysqldriver.MySQLError{Number: 1586}, want: credential.ErrConflict},
		{err: &mysqldriver.MySQLError{Number: 1213}, want: credential.ErrUnavailable, retryable: true},
		{err: &mysqldriver.MySQLError{Number: 1205}, want: credential.ErrUnavailable, retryable: true},
		{err: fmt.Errorf("commit: %w", &mysqldriver.MySQLError{Number: 1213}), want: credential.ErrUnavailable, retryable: true},
		{err: &mysqldriver.MySQLError{Number: 1040}, want: credential.ErrUnavailable},
		{err: &mysqldriver.MySQLError{Number: 1053}, want: credential.ErrUnavailable},
		{err: &mysqldriver.MySQLError{Number: 1927}, want: credential.ErrUnavailable},
		{err: &mysqldriver.MySQLError{Number: 1290}, want: credential.ErrUnavailable},
		{err: &mysqldriver.MySQLError{Number: 1317}, want: credential.ErrUnavailable},
		{err: &mysqldriver.MySQLError{Number: 3024}, want: credential.ErrDeadlineExceeded},
		{err: &mysqldriver.MySQLError{Number: 1969}, want: credential.ErrDeadlineExceeded},
		{err: mysqldriver.ErrInvalidConn, want: credential.ErrUnavailable},
		{err: mysqldriver.ErrPktSync, want: credential.ErrUnavailable},
		{err: &mysqldriver.MySQLError{Number: 1146}}, // no such table: a bug, not an outage
		{err: &mysqldriver.MySQLError{Number: 1064}}, // syntax
		{err: driver.ErrBadConn}, // sqlstore's to recognise
		{err: errors.New("other")},
	} {
		if got := d.Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
		if got := d.Retryable(tt.err); got != tt.retryable {
			t.Errorf("Retryable(%v) = %t, want %t", tt.err, got, tt.retryable)
		}
	}
}
