package store

import (
	"context"
	"slices"
	"time"
)

// OverviewStore gives the dashboard its figures of one project. Every
// query it makes is served by an index (indexes of the unfinished tasks
// for those, tasks_project_ended for the ended ones, which also covers
// every column read), so it stays cheap with millions of tasks.
type OverviewStore interface {
	Overview(ctx context.Context, p OverviewParams) (Overview, error)
}

// OverviewParams asks for a project's figures since a time.
type OverviewParams struct {
	ProjectID string
	// Since is the start of the window: tasks that ended at or after it
	// are counted. The series starts there too.
	Since time.Time
	// Bucket is the width of one point of the series (> 0).
	Bucket time.Duration
}

// CodeCount is how many tasks of a code have a status.
type CodeCount struct {
	CodeName string
	Status   Status
	N        int64
}

// OverviewBucket is what ended in [Start, Start+Bucket).
type OverviewBucket struct {
	Start time.Time
	Ended map[Status]int64
	// Waited counts the ended tasks that started; WaitSum and WaitMax are
	// their queue waits (due time to start time).
	Waited           int64
	WaitSum, WaitMax time.Duration
}

// Overview is a project's dashboard figures.
type Overview struct {
	// Active counts queued, preparing and running tasks per code, now.
	Active []CodeCount
	// Ended counts the tasks that ended in the window per code and status.
	Ended []CodeCount
	// Series has the buckets in which something ended, oldest first.
	Series []OverviewBucket
}

// OverviewRow is one group of ended tasks as both backends read them;
// FoldOverview turns the rows into an Overview.
type OverviewRow struct {
	Bucket   int64
	CodeName string
	Status   Status
	N        int64
	// Waited, WaitSum and WaitMax in microseconds.
	Waited, WaitSum, WaitMax int64
}

// FoldOverview sums rows of ended tasks per code and per bucket.
func FoldOverview(p OverviewParams, active []CodeCount, rows []OverviewRow) Overview {
	o := Overview{Active: active}
	ended := map[[2]string]int64{}
	var order [][2]string
	buckets := map[int64]*OverviewBucket{}
	var keys []int64
	for _, r := range rows {
		k := [2]string{r.CodeName, string(r.Status)}
		if _, ok := ended[k]; !ok {
			order = append(order, k)
		}
		ended[k] += r.N
		b := buckets[r.Bucket]
		if b == nil {
			b = &OverviewBucket{Start: p.Since.Add(time.Duration(r.Bucket) * p.Bucket), Ended: map[Status]int64{}}
			buckets[r.Bucket] = b
			keys = append(keys, r.Bucket)
		}
		b.Ended[r.Status] += r.N
		b.Waited += r.Waited
		b.WaitSum += time.Duration(max(r.WaitSum, 0)) * time.Microsecond
		b.WaitMax = max(b.WaitMax, time.Duration(r.WaitMax)*time.Microsecond)
	}
	for _, k := range order {
		o.Ended = append(o.Ended, CodeCount{CodeName: k[0], Status: Status(k[1]), N: ended[k]})
	}
	slices.Sort(keys)
	for _, k := range keys {
		o.Series = append(o.Series, *buckets[k])
	}
	return o
}
