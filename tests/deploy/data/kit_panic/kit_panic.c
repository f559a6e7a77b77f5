// A module whose init panics: the deploy tests expect GuestCrashed and a partial bundle.
#include <linux/kernel.h>
#include <linux/module.h>
static int __init kit_panic_init(void) { panic("kit_panic: deliberate panic from module_init"); return 0; }
module_init(kit_panic_init);
MODULE_LICENSE("GPL");
