// The controller: shared informers on AppTasks and on the labelled Deployments (managedFields
// dropped before caching), a rate-limited work queue of AppTask keys, and the reconcile: per new
// generation one server-side apply and one status patch; a Deployment change re-enqueues its
// owner, whose status is patched when it changed.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const requestTimeout = 30 * time.Second

// memo is what the controller remembers of an AppTask (uid) between reconciles: the generation
// it applied and the Deployment that apply answered with, a Deployment of that name seen
// deleted since, and the status it wrote until the AppTask's cache holds that write.
type memo struct {
	uid        types.UID
	applied    int64
	depUID     types.UID
	depGen     int64
	deletedUID types.UID
	status     *AppTaskStatus
	statusRV   string
}

type controller struct {
	kube         kubernetes.Interface
	appTasks     rest.Interface
	fieldManager string
	appTaskStore cache.Indexer
	depStore     cache.Indexer
	synced       []cache.InformerSynced
	informers    []cache.SharedIndexInformer
	queue        workqueue.RateLimitingInterface
	mu           sync.Mutex
	memos        map[string]*memo
}

// withoutManagedFields wraps a ListWatch so that nothing it delivers carries managedFields: the
// informer caches what it is given, and client-go 1.20 has no SetTransform.
func withoutManagedFields(lw cache.ListerWatcher) cache.ListerWatcher {
	strip := func(obj runtime.Object) {
		if accessor, err := meta.Accessor(obj); err == nil {
			accessor.SetManagedFields(nil)
		}
	}
	return &cache.ListWatch{
		ListFunc: func(options metav1.ListOptions) (runtime.Object, error) {
			list, err := lw.List(options)
			if err == nil {
				err = meta.EachListItem(list, func(obj runtime.Object) error {
					strip(obj)
					return nil
				})
			}
			return list, err
		},
		WatchFunc: func(options metav1.ListOptions) (watch.Interface, error) {
			w, err := lw.Watch(options)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(event watch.Event) (watch.Event, bool) {
				strip(event.Object)
				return event, true
			}), nil
		},
	}
}

func newController(kube kubernetes.Interface, appTasks rest.Interface, namespace,
	fieldManager string) *controller {
	selector := labels.SelectorFromSet(labels.Set{managedByLabel: managedByValue}).String()
	deployments := &cache.ListWatch{
		ListFunc: func(options metav1.ListOptions) (runtime.Object, error) {
			options.LabelSelector = selector
			return kube.AppsV1().Deployments(namespace).List(context.TODO(), options)
		},
		WatchFunc: func(options metav1.ListOptions) (watch.Interface, error) {
			options.LabelSelector = selector
			return kube.AppsV1().Deployments(namespace).Watch(context.TODO(), options)
		},
	}
	tasks := cache.NewListWatchFromClient(appTasks, "apptasks", namespace, fields.Everything())
	taskInformer := cache.NewSharedIndexInformer(withoutManagedFields(tasks), &AppTask{}, 0,
		cache.Indexers{})
	depInformer := cache.NewSharedIndexInformer(withoutManagedFields(deployments),
		&appsv1.Deployment{}, 0, cache.Indexers{})
	c := &controller{
		kube: kube, appTasks: appTasks, fieldManager: fieldManager,
		appTaskStore: taskInformer.GetIndexer(), depStore: depInformer.GetIndexer(),
		synced:    []cache.InformerSynced{taskInformer.HasSynced, depInformer.HasSynced},
		informers: []cache.SharedIndexInformer{taskInformer, depInformer},
		queue: workqueue.NewNamedRateLimitingQueue(workqueue.DefaultControllerRateLimiter(),
			"apptasks"),
		memos: map[string]*memo{},
	}
	taskInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: c.appTaskUpdated,
		DeleteFunc: c.appTaskDeleted,
	})
	depInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueOwner,
		UpdateFunc: func(old, new interface{}) {
			if old.(*appsv1.Deployment).ResourceVersion != new.(*appsv1.Deployment).ResourceVersion {
				c.enqueueOwner(new)
			}
		},
		DeleteFunc: c.deploymentDeleted,
	})
	return c
}

func (c *controller) enqueue(obj interface{}) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// appTaskUpdated enqueues a new generation only (the controller's own status writes are not
// work), and forgets a remembered status once the cache holds the version that wrote it.
func (c *controller) appTaskUpdated(old, new interface{}) {
	before, after := old.(*AppTask), new.(*AppTask)
	key, _ := cache.MetaNamespaceKeyFunc(after)
	c.mu.Lock()
	if m := c.memos[key]; m != nil && m.uid == after.UID && m.statusRV == after.ResourceVersion {
		m.status, m.statusRV = nil, ""
	}
	c.mu.Unlock()
	if before.Generation != after.Generation || before.UID != after.UID {
		c.queue.Add(key)
	}
}

func (c *controller) appTaskDeleted(obj interface{}) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	c.mu.Lock()
	delete(c.memos, key)
	c.mu.Unlock()
	c.queue.Forget(key)
}

// ownerKey is the key of the AppTask controlling obj, if any.
func ownerKey(obj interface{}) (string, bool) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return "", false
	}
	ref := metav1.GetControllerOfNoCopy(d)
	if ref == nil || ref.Kind != kindAppTask || ref.APIVersion != groupVersion.String() {
		return "", false
	}
	return d.Namespace + "/" + ref.Name, true
}

func (c *controller) enqueueOwner(obj interface{}) {
	if key, ok := ownerKey(obj); ok {
		c.queue.Add(key)
	}
}

// deploymentDeleted records the deletion, so that the owner applies its Deployment again even
// when this process applied its generation already (see needsApply).
func (c *controller) deploymentDeleted(obj interface{}) {
	key, ok := ownerKey(obj)
	if !ok {
		return
	}
	if tombstone, isTombstone := obj.(cache.DeletedFinalStateUnknown); isTombstone {
		obj = tombstone.Obj
	}
	c.mu.Lock()
	if m := c.memos[key]; m != nil {
		m.deletedUID = obj.(*appsv1.Deployment).UID
	}
	c.mu.Unlock()
	c.queue.Add(key)
}

// remembered is a copy of the memo of key for the AppTask with uid (a fresh one when the uid
// changed: the AppTask was re-created).
func (c *controller) remembered(key string, uid types.UID) memo {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.memos[key]
	if m == nil || m.uid != uid {
		m = &memo{uid: uid}
		c.memos[key] = m
	}
	return *m
}

func (c *controller) update(key string, uid types.UID, change func(*memo)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.memos[key]; m != nil && m.uid == uid {
		change(m)
	}
}

// needsApply: a generation this process has not applied and the status does not show as acted
// on, or no Deployment in the cache while this process's apply is not known to have created one
// that is still there (the cache may not have seen that apply's answer yet).
func needsApply(at *AppTask, d *appsv1.Deployment, m memo) bool {
	if d == nil {
		return m.applied != at.Generation || m.deletedUID == m.depUID
	}
	return m.applied != at.Generation && at.Status.ObservedGeneration != at.Generation
}

func (c *controller) reconcile(ctx context.Context, key string) error {
	obj, exists, err := c.appTaskStore.GetByKey(key)
	if err != nil {
		return err
	}
	if !exists {
		c.mu.Lock()
		delete(c.memos, key)
		c.mu.Unlock()
		return nil
	}
	at := obj.(*AppTask)
	var d *appsv1.Deployment
	if cached, found, err := c.depStore.GetByKey(key); err != nil {
		return err
	} else if found {
		d = cached.(*appsv1.Deployment)
	}
	m := c.remembered(key, at.UID)
	if needsApply(at, d, m) {
		if d, err = c.apply(ctx, at); err != nil {
			return err
		}
		c.update(key, at.UID, func(m *memo) {
			m.applied, m.depUID, m.depGen = at.Generation, d.UID, d.Generation
		})
	} else if d == nil || d.UID == m.depUID && d.Generation < m.depGen {
		return nil // the cache is behind this process's apply: its watch event comes
	}
	current := &at.Status
	if m.status != nil {
		current = m.status
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	wanted := computeStatus(at, current, d, now)
	if equality.Semantic.DeepEqual(*current, wanted) {
		return nil
	}
	rv, err := c.patchStatus(ctx, at, &wanted)
	if err != nil {
		return err
	}
	c.update(key, at.UID, func(m *memo) {
		// unless the cache holds it already (its event may come before this line)
		if cached, found, _ := c.appTaskStore.GetByKey(key); !found ||
			!equality.Semantic.DeepEqual(cached.(*AppTask).Status, wanted) {
			m.status, m.statusRV = &wanted, rv
		}
	})
	return nil
}

func (c *controller) apply(ctx context.Context, at *AppTask) (*appsv1.Deployment, error) {
	body, err := render(at)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	force := true
	return c.kube.AppsV1().Deployments(at.Namespace).Patch(ctx, at.Name, types.ApplyPatchType,
		body, metav1.PatchOptions{FieldManager: c.fieldManager, Force: &force})
}

// patchStatus writes status by a JSON merge patch of /status; the answer's resourceVersion.
func (c *controller) patchStatus(ctx context.Context, at *AppTask,
	status *AppTaskStatus) (string, error) {
	body, err := json.Marshal(map[string]*AppTaskStatus{"status": status})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	answer := &AppTask{}
	err = c.appTasks.Patch(types.MergePatchType).Namespace(at.Namespace).Resource("apptasks").
		Name(at.Name).SubResource("status").Body(body).Do(ctx).Into(answer)
	if apierrors.IsNotFound(err) {
		return "", nil // deleted meanwhile: its DELETED event comes
	}
	return answer.ResourceVersion, err
}

func (c *controller) processNext(ctx context.Context) bool {
	item, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(item)
	key := item.(string)
	if err := c.reconcile(ctx, key); err != nil {
		klog.Errorf("reconcile %s: %v", key, err)
		c.queue.AddRateLimited(key)
	} else {
		c.queue.Forget(key)
	}
	return true
}

// run starts the informers, waits for both caches, then runs `workers` workers until ctx ends.
func (c *controller) run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	for _, informer := range c.informers {
		go informer.Run(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("caches not synced")
	}
	for i := 0; i < workers; i++ {
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for c.processNext(ctx) {
			}
		}, time.Second)
	}
	<-ctx.Done()
	return nil
}
