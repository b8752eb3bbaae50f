// The AppTask API type (example.com/v1) as a Go controller declares it: a typed struct with the
// fields the controller reads, registered in a scheme of its own, and a REST client for it. What
// kubebuilder would generate, written by hand (deep copies included): there are no generated
// types for this CRD.
package main

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
)

var (
	groupVersion = schema.GroupVersion{Group: "example.com", Version: "v1"}
	scheme       = runtime.NewScheme()
	codecs       = serializer.NewCodecFactory(scheme)
)

func init() {
	scheme.AddKnownTypes(groupVersion, &AppTask{}, &AppTaskList{})
	metav1.AddToGroupVersion(scheme, groupVersion)
}

type AppTask struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AppTaskSpec   `json:"spec"`
	Status            AppTaskStatus `json:"status,omitempty"`
}

type AppTaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AppTask `json:"items"`
}

type AppTaskSpec struct {
	Image       string            `json:"image"`
	Replicas    *int32            `json:"replicas,omitempty"`
	Command     []string          `json:"command,omitempty"`
	Args        []string          `json:"args,omitempty"`
	Env         []EnvVar          `json:"env,omitempty"`
	Ports       []Port            `json:"ports,omitempty"`
	Resources   Resources         `json:"resources,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// EnvVar, Port and Resources are shaped as the apply body sends them (render.go).
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

type Port struct {
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	Name          string `json:"name,omitempty"`
}

// Quantities stay as the user wrote them (a string or an integer), as the apply body sends them.
type Resources struct {
	Requests map[string]intstr.IntOrString `json:"requests,omitempty"`
	Limits   map[string]intstr.IntOrString `json:"limits,omitempty"`
}

type AppTaskStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	Phase              string             `json:"phase"`
	ReadyReplicas      int32              `json:"readyReplicas"`
	Conditions         []metav1.Condition `json:"conditions"`
	DeploymentName     string             `json:"deploymentName,omitempty"`
}

// appTaskClient is a REST client for example.com/v1 speaking JSON, as client-go's generated
// clients for custom resources do.
func appTaskClient(base *rest.Config) (*rest.RESTClient, error) {
	config := rest.CopyConfig(base)
	config.GroupVersion = &groupVersion
	config.APIPath = "/apis"
	config.ContentType = runtime.ContentTypeJSON
	config.NegotiatedSerializer = codecs.WithoutConversion()
	return rest.RESTClientFor(config)
}

func (in *AppTask) DeepCopyObject() runtime.Object {
	out := &AppTask{TypeMeta: in.TypeMeta}
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	in.Spec.deepCopyInto(&out.Spec)
	in.Status.deepCopyInto(&out.Status)
	return out
}

func (in *AppTaskList) DeepCopyObject() runtime.Object {
	out := &AppTaskList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]AppTask, len(in.Items))
		for i := range in.Items {
			out.Items[i] = *in.Items[i].DeepCopyObject().(*AppTask)
		}
	}
	return out
}

func (in *AppTaskSpec) deepCopyInto(out *AppTaskSpec) {
	*out = *in
	if in.Replicas != nil {
		replicas := *in.Replicas
		out.Replicas = &replicas
	}
	out.Command = append([]string(nil), in.Command...)
	out.Args = append([]string(nil), in.Args...)
	out.Env = append([]EnvVar(nil), in.Env...)
	out.Ports = append([]Port(nil), in.Ports...)
	out.Resources = Resources{Requests: copyQuantities(in.Resources.Requests),
		Limits: copyQuantities(in.Resources.Limits)}
	out.Labels = copyStrings(in.Labels)
	out.Annotations = copyStrings(in.Annotations)
}

func (in *AppTaskStatus) deepCopyInto(out *AppTaskStatus) {
	*out = *in
	if in.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(in.Conditions))
		for i := range in.Conditions {
			in.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
}

func copyQuantities(in map[string]intstr.IntOrString) map[string]intstr.IntOrString {
	if in == nil {
		return nil
	}
	out := make(map[string]intstr.IntOrString, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func copyStrings(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
