// SPDX-License-Identifier: GPL-2.0
/* Footprint fixture: text in several functions, rodata, ro_after_init, data, bss,
 * init text/data/rodata, an exit function, an exported symbol and a static key
 * (__jump_table). Built by tests/data/live/src/build.sh. */
#include <linux/module.h>
#include <linux/init.h>
#include <linux/string.h>
#include <linux/jump_label.h>
#include <linux/cache.h>

static const char kh5_table[3000] = { [0] = 1, [2999] = 2 };
static int kh5_ro_after __ro_after_init = 5;
static int kh5_data = 7;
static char kh5_bss[5000];
static int kh5_initdata[100] __initdata = { 1 };
static const char kh5_initconst[] __initconst = "init const string";
static DEFINE_STATIC_KEY_FALSE(kh5_key);

static noinline int kh5_f1(int x)
{
	if (static_branch_unlikely(&kh5_key))
		return -x;
	return x * 3 + kh5_table[x % 3000];
}

static noinline int kh5_f2(int x)
{
	return kh5_f1(x) + kh5_data + kh5_bss[x % 5000];
}

int kh5_exported(int x)
{
	return kh5_f2(x) ^ kh5_ro_after;
}
EXPORT_SYMBOL(kh5_exported);

static int __init kh5_init(void)
{
	kh5_ro_after = kh5_initdata[0] + strlen(kh5_initconst);
	kh5_bss[1] = 1;
	pr_info("kh5foot: %d %d\n", kh5_exported(3), kh5_f1(4));
	return 0;
}

static void __exit kh5_exit(void)
{
	pr_info("kh5foot: bye %d\n", kh5_f2(1));
}

module_init(kh5_init);
module_exit(kh5_exit);
MODULE_LICENSE("GPL");
