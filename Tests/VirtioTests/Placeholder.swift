import Testing
import Virtio
