// Command receiver is an example webhook endpoint, in the spirit of the Flask
// receiver in Gluster's documentation: it prints each event it is sent and
// answers 200. With --secret it checks Standard Webhooks signatures; with
// --token it requires the bearer token.
package main

import (
	"crypto/hmac"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"

	"github.com/courierhq/courier/sinks/webhook"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	token := flag.String("token", "", "required bearer token")
	secret := flag.String("secret", "", "whsec_ secret to verify signatures with")
	flag.Parse()

	var keys [][]byte
	if *secret != "" {
		k, err := webhook.DecodeSecret(*secret)
		if err != nil {
			log.Fatalf("receiver: %v", err)
		}
		keys = [][]byte{k}
	}
	http.HandleFunc("/listen", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		if *token != "" && r.Header.Get("Authorization") != "Bearer "+*token {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		if keys != nil {
			ts, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
			want := webhook.Sign(keys, r.Header.Get("webhook-id"), ts, body)
			if !hmac.Equal([]byte(want), []byte(strings.Fields(r.Header.Get("webhook-signature") + " ")[0])) {
				http.Error(w, "bad signature", http.StatusUnauthorized)
				return
			}
		}
		fmt.Printf("received %s: %s\n", r.Header.Get("webhook-id"), body)
		fmt.Fprintln(w, "OK")
	})
	log.Printf("receiver listening on http://%s/listen", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
