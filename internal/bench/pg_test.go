package bench_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/bench"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

// postgresAdmin is a URL on the test binary's PostgreSQL server; its user
// is the cluster's superuser, so the scenarios can create databases
// beside it as they would with --postgres-url.
func postgresAdmin(t *testing.T) string {
	t.Helper()
	return testenv.Postgres(t)
}

// benchDatabases lists the databases the scenarios made and did not drop.
func benchDatabases(t *testing.T, admin string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'mayfly_bench_%'")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestQueuePGTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the River baseline")
	}
	cfg := tiny(t)
	cfg.PostgresURL = postgresAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := bench.RunQueuePG(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Store != "postgres" || r.Tasks != 200 || r.MayflyRate <= 0 || r.River.TasksPerSec <= 0 || r.River.Tasks != 200 ||
		r.River.Workers != 4 || r.River.Database != "postgres" {
		t.Errorf("result not sane: %+v", r)
	}
	checkTarget(t, r.Target)
	if left := benchDatabases(t, cfg.PostgresURL); len(left) > 0 {
		t.Errorf("databases left behind: %v", left)
	}
}

func TestScalePGTiny(t *testing.T) {
	cfg := tiny(t)
	cfg.PostgresURL = postgresAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := bench.RunScalePG(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tasks != 200 || r.Rounds != 2 || r.C != 4 || r.OneRate <= 0 || r.TwoRate <= 0 || !r.InProcess {
		t.Errorf("result not sane: %+v", r)
	}
	// Every task ran exactly once between the two servers; which one took
	// how many is up to them.
	if r.TwoShare[0]+r.TwoShare[1] != 200*r.Rounds {
		t.Errorf("the two servers finished %d + %d tasks, want %d in all", r.TwoShare[0], r.TwoShare[1], 200*r.Rounds)
	}
	checkTarget(t, r.Target)
	if left := benchDatabases(t, cfg.PostgresURL); len(left) > 0 {
		t.Errorf("databases left behind: %v", left)
	}
}

// Without a server the PostgreSQL scenarios are not run, and the report
// says how to run them, so a result without them is not read as complete.
func TestPostgresScenariosSkippedWithoutServer(t *testing.T) {
	cfg := tiny(t)
	cfg.PostgresURL = ""
	r, err := bench.Run(context.Background(), cfg, bench.QueuePG, bench.ScalePG)
	if err != nil {
		t.Fatal(err)
	}
	if r.QueuePG != nil || r.ScalePG != nil {
		t.Errorf("ran without a server: %+v", r)
	}
	if len(r.Skipped) != 2 || r.Skipped[0].Scenario != bench.QueuePG || r.Skipped[1].Scenario != bench.ScalePG {
		t.Fatalf("skipped = %+v, want queue-pg and scale-pg", r.Skipped)
	}
	var md bytes.Buffer
	if err := bench.WriteMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Skipped queue-pg", "Skipped scale-pg", "--postgres-url", bench.PostgresURLEnv} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}

func TestPostgresURLRefusedWhenNotPostgres(t *testing.T) {
	cfg := tiny(t)
	cfg.PostgresURL = "mysql://secret-password@db/x"
	_, err := bench.RunScalePG(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "--postgres-url") {
		t.Fatalf("err = %v, want one about --postgres-url", err)
	}
	if strings.Contains(err.Error(), "secret-password") {
		t.Errorf("the error repeats the URL's secret: %v", err)
	}
}
