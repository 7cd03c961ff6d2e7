// Command progress reports a task's progress through the runner's API
// socket, as a worker inside a container without network would.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	sock, url := os.Getenv("MAYFLY_API_SOCKET"), os.Getenv("MAYFLY_API_URL")
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	path := url + "/2/projects/" + os.Getenv("PROJECT_ID") + "/tasks/"
	post := func(taskID, body, token string) {
		req, _ := http.NewRequest("POST", path+taskID+"/progress", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "OAuth "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %s", resp.StatusCode, b)
	}
	id := os.Getenv("TASK_ID")
	post(id, `{"percent":42,"msg":"almost half"}`, os.Getenv("MAYFLY_TASK_TOKEN"))
	post("000000000000000000000000", `{"percent":1}`, os.Getenv("MAYFLY_TASK_TOKEN"))
	post(id, `{"percent":43}`, "mtt.forged.token.1.x")
	// Within a second of the first: held, and written before the end.
	post(id, `{"percent":100,"msg":"done"}`, "")
}
