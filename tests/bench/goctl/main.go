// ssa-bench-goctl: the benchmark's Go yardstick, the job of ssa-controller done the way a Go
// controller does it with client-go (tests/bench/bench_compare.py runs it; docs/benchmark.md).
//
//	ssa-bench-goctl --kubeconfig K --namespace NS [--workers 4]
//	ssa-bench-goctl render < {"apptask": ..., "deployment": ..., "now": RFC 3339}
//
// The second form prints {"apply": the apply body, "status": the status}, for the test that
// holds them to ssa_controller.desired.render and ssa_controller.status.compute.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	userAgent    = "bench-goctl"
	fieldManager = "ssa-bench-goctl"
	// the write limit the benchmark gives the Python controller (rateLimit.qps and burst)
	clientQPS = 1000
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "render" {
		if err := renderStdin(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "", "the namespace to watch (all when empty)")
	workers := flag.Int("workers", 4, "reconciling workers")
	flag.Parse()
	if err := run(*kubeconfig, *namespace, *workers); err != nil {
		klog.Errorf("%v", err)
		os.Exit(1)
	}
}

func run(kubeconfig, namespace string, workers int) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	config.UserAgent = userAgent
	config.QPS, config.Burst = clientQPS, clientQPS
	kube, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	appTasks, err := appTaskClient(config)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return newController(kube, appTasks, namespace, fieldManager).run(ctx, workers)
}

func renderStdin() error {
	var input struct {
		AppTask    AppTask           `json:"apptask"`
		Deployment appsv1.Deployment `json:"deployment"`
		Now        time.Time         `json:"now"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		return err
	}
	body, err := render(&input.AppTask)
	if err != nil {
		return err
	}
	status := computeStatus(&input.AppTask, &input.AppTask.Status, &input.Deployment,
		metav1.NewTime(input.Now))
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"apply": json.RawMessage(body), "status": status})
}
