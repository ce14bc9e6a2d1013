// agora-grpc-gateway-peer: the peer `make bench` measures Agora's gateway against.
//
// grpc-gateway v2 is the REST-to-gRPC proxy a Go shop would otherwise pick. This program is
// grpc-gateway as its documentation sets it up: handlers generated (by scripts/peer.sh) from
// Agora's own protos and their google.api.http rules, a runtime.ServeMux with its defaults,
// and a plain net/http server, in front of the same product-service Agora's gateway calls. It
// serves ProductService's routes only: the ones the benchmark drives.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	productv1 "agora-peer/gen/productv1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to serve REST on")
	backend := flag.String("backend", "127.0.0.1:50052", "product-service's gRPC address")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		_, _ = out.Write([]byte("Usage: agora-grpc-gateway-peer [-listen ADDR] [-backend ADDR]\n\n" +
			"grpc-gateway v2 generated from Agora's protos, serving ProductService's REST routes\n" +
			"in front of product-service: the peer make bench compares Agora's gateway with.\n\n"))
		flag.PrintDefaults()
	}
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	mux := runtime.NewServeMux()
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if err := productv1.RegisterProductServiceHandlerFromEndpoint(ctx, mux, *backend, dial); err != nil {
		log.Fatalf("cannot set up the backend %s: %v", *backend, err)
	}

	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		drain, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(drain)
	}()
	log.Printf("grpc-gateway peer: serving http://%s, backend %s", *listen, *backend)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("cannot serve on %s: %v", *listen, err)
		os.Exit(1)
	}
	log.Printf("grpc-gateway peer: stopped")
}
